"""The Redis store: leases with a TTL, fencing tokens, Lua scripts (store.py)."""
