"""The PostgreSQL store: advisory locks with a lease row, fencing tokens (store.py)."""
