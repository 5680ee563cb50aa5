"""Distillation methods, one module each, registered by name.

Every module in this package is imported here, so a new method only needs its own file
with a ``@register("name")`` class; nothing else has to be edited.
"""
import importlib
import pkgutil

from lab.methods.base import REGISTRY, Method, MethodConfig, Targets, get_method, list_methods, register

for _m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _m.name != "base" and not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["REGISTRY", "Method", "MethodConfig", "Targets", "get_method", "list_methods", "register"]
