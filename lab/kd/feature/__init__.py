"""Feature distillation methods (see README.md)."""
