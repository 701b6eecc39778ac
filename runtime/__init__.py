"""The irules runtime: the command-line interface and, later, the daemon."""
