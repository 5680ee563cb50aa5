"""Distillation methods, one module each, registered by name."""
from lab.methods.base import REGISTRY, Method, MethodConfig, Targets, get_method, list_methods, register
from lab.methods import consistency, dmd, progressive, reflow  # noqa: F401  (registers the methods)

__all__ = ["REGISTRY", "Method", "MethodConfig", "Targets", "get_method", "list_methods", "register"]
