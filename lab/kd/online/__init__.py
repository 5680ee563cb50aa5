"""Online and self-distillation methods (see README.md)."""
