"""Adversarial methods (see README.md)."""
