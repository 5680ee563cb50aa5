"""What the online and self-distillation methods share: no pre-trained teacher.

The student learns from networks trained in the same run (peers in ``dml``, earlier generations in
``born_again``), so ``needs_teacher`` is False: a task teacher passed anyway (the generic constructors do) is never
used in training, it only gives the ``agree`` evaluation metric (as for ``scratch``). The configs default to the
papers' plain softmax (T = 1) with cross-entropy and KL weights 1, and the benchmark runs on the ``hard`` task.
"""
from __future__ import annotations

from dataclasses import dataclass

from lab.kd.base import KDConfig, KDMethod


@dataclass
class OnlineConfig(KDConfig):
    #: no softening: the papers' KL is on the plain softmax
    temperature: float = 1.0
    ce_weight: float = 1.0
    kd_weight: float = 1.0


class OnlineKD(KDMethod):
    """A KD method whose teachers are trained in the same run (subclasses build them in ``setup``)."""

    Config = OnlineConfig
    needs_teacher = False
    bench_task = "hard"


__all__ = ["OnlineConfig", "OnlineKD"]
