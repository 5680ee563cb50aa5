"""Consistency methods (see README.md)."""
