"""What the tests and the benchmarks both use: real servers on loopback ports (servers.py)."""
