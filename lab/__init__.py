"""Distillation Lab: run distillation methods and look inside them.

Public API (used by the CLI, the app and the notebooks):

    import lab
    teacher = lab.zoo.load("toy2d/8gaussians/teacher")
    method = lab.get_method("consistency")(teacher, "toy2d:8gaussians")
    for state in lab.distill(method, steps=500): ...
    student = method.generator()
    student.sample(1000, nfe=2, seed=0).x

Layers (import direction; ``bench/import_graph.py``'s ``LAYERS``, held by ``tests/test_import_graph.py``).
A package imports only packages on its own line or below it, never one above, and no two packages import
each other, directly or through others. Highest first:

    cli, __main__                                  (surfaces; app/, notebooks/ and bench/ sit above lab)
    viz
    probes
    zoo, runs
    methods, kd, dd
    interop
    metrics, losses, diffusion, nets, data
    trainable
    io, config, errors, version, lab/__init__ itself

``lab/__init__`` imports everything. ``lab.zoo`` installs its
resolver into ``lab.trainable`` so that lower layers (methods, kd, runs) resolve model references by
``lab.trainable.resolve_reference`` without importing the zoo.
"""
from lab.metrics.threads import cap_threads as _cap_threads

_cap_threads()  # $LAB_NUM_THREADS for torch and numpy's BLAS (the Makefile sets 1), before anything runs

from lab.errors import LabError  # noqa: E402
from lab.diffusion import load_generator as load
from lab.methods import Method, Targets, get_method, list_methods, register
from lab.runs.loop import distill, train
from lab import data, dd, diffusion, kd, metrics, probes, runs, viz, zoo  # noqa: E402

from lab.version import __version__  # noqa: E402
__all__ = ["LabError", "load", "Method", "Targets", "get_method", "list_methods", "register", "distill", "train",
           "data", "dd", "diffusion", "kd", "metrics", "probes", "runs", "viz", "zoo"]
