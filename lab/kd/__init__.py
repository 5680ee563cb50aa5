"""Knowledge distillation of classifiers and language models.

Methods live one module each in this package and register by name (``lab.kd.list_methods()``);
a new method only needs its own file with a ``@register("name")`` class. Tasks: ``lab.kd.list_tasks()``.
"""
import importlib
import pkgutil

from lab.kd.base import KD_REGISTRY, KDConfig, KDMethod, KDTargets, get, list_methods, register
from lab.kd.tasks import KDTask, get_task, list_tasks
from lab.kd.zoo import KDModel, load_model, load_teacher

_SKIP = {"base", "tasks", "zoo"}
for _m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _m.name not in _SKIP and not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["KD_REGISTRY", "KDConfig", "KDMethod", "KDTargets", "get", "list_methods", "register", "KDTask",
           "get_task", "list_tasks", "KDModel", "load_model", "load_teacher"]
