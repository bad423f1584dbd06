"""The embedded store: flock-ed lock files in a local directory (store.py)."""
