"""Distillation Lab: run distillation methods and look inside them.

Public API (used by the CLI, the app and the notebooks):

    import lab
    teacher = lab.zoo.load("toy2d/8gaussians/teacher")
    method = lab.get_method("consistency")(teacher, "toy2d:8gaussians")
    for state in lab.distill(method, steps=500): ...
    student = method.generator()
    student.sample(1000, nfe=2, seed=0).x
"""
import os as _os

import torch as _torch

if _os.environ.get("LAB_NUM_THREADS"):
    # Toy models gain nothing from many threads, and oversubscribed threads on a busy
    # 2-core machine slow training by 10x or more: the Makefile sets LAB_NUM_THREADS=1.
    _torch.set_num_threads(int(_os.environ["LAB_NUM_THREADS"]))
    try:  # numpy's BLAS too (scikit-learn PCA/k-NN, CKA on numpy): a 2-thread SVD on busy cores is ~30x slower
        import threadpoolctl as _tpc

        _tpc.threadpool_limits(int(_os.environ["LAB_NUM_THREADS"]))
    except ImportError:  # scikit-learn brings threadpoolctl; without it only torch is limited
        pass

from lab.errors import LabError  # noqa: E402
from lab.diffusion import load_generator as load
from lab.methods import Method, Targets, get_method, list_methods, register
from lab.runs.loop import distill, train
from lab import data, diffusion, kd, metrics, probes, runs, viz, zoo  # noqa: E402

__version__ = "0.1.0"
__all__ = ["LabError", "load", "Method", "Targets", "get_method", "list_methods", "register", "distill", "train",
           "data", "diffusion", "kd", "metrics", "probes", "runs", "viz", "zoo"]
