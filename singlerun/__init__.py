"""singlerun: run at most one instance of a job at a time."""

__version__ = "0.1.0"
