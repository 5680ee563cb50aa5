"""Trajectory methods (see README.md)."""
