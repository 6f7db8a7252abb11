"""One optimisation pass per module; each exposes a single function named for its work."""
