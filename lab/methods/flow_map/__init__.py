"""Flow map methods (see README.md)."""
