"""Distillation Lab: run distillation methods and look inside them.

Public API (used by the CLI, the app and the notebooks):

    import lab
    teacher = lab.zoo.load("toy2d/8gaussians/teacher")
    method = lab.get_method("consistency")(teacher, "toy2d:8gaussians")
    for state in lab.distill(method, steps=500): ...
    student = method.generator()
    student.sample(1000, nfe=2, seed=0).x
"""
from lab.errors import LabError
from lab.diffusion import load_generator as load
from lab.methods import Method, Targets, get_method, list_methods, register
from lab.runs.loop import distill, train
from lab import data, diffusion, metrics, zoo  # noqa: E402

__version__ = "0.1.0"
__all__ = ["LabError", "load", "Method", "Targets", "get_method", "list_methods", "register", "distill", "train",
           "data", "diffusion", "metrics", "zoo"]
