"""Logit distillation methods (see README.md)."""
