"""Score distillation methods (see README.md)."""
