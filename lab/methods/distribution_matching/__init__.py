"""Distribution matching methods (see README.md)."""
