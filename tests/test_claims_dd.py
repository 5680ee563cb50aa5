"""Claims of the dataset-distillation papers on 8x8 digits, each measured against its baseline in the same test.

- A fresh ConvNet trained only on a distilled set beats the same net trained on the same number of random real
  images per class (same protocol, same evaluation steps). Paired by seed: a method's seed-s set starts from the
  random real images of seed s (``init="real"``), which are the baseline of seed s. Measured on seeds 2, 3, 4
  (configs tuned on seeds 0 and 1), one evaluation net per seed; the mean gain must exceed the standard deviation
  of the gains across seeds and a fixed floor.
  * DM at 10 images per class.
  * DC, MTT and FTD at 1 image per class: at 10 their distillation is too slow for the test budget (DC about
    1.4 s per outer iteration, MTT/FTD 0.4 s at 20 unrolled steps on 100 images); bench/dd.py measures all four at
    ipc 1 and 10.
- FTD (SAM experts, EMA images) has a lower accumulated trajectory error than MTT: the test loss of a net
  trained on the distilled set from an expert's initialisation minus the expert's at the same epoch, summed over
  the expert epochs and averaged over the experts (each method against its own experts, as in the paper), on
  the same seeds and budgets.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lab
import lab.dd as dd
from lab.dd.base import EvalProtocol, evaluate_set, random_real
from lab.dd.trajectory import accumulated_error, trajectory_error

torch.set_num_threads(1)

SEEDS = (2, 3, 4)  # tuned on 0 and 1
IPC1 = {
    "dc": {"ipc": 1, "steps": 5, "outer_loop": 3, "inner_loop": 5, "batch_real": 32},
    "mtt": {"ipc": 1, "steps": 25, "syn_steps": 10},
    "ftd": {"ipc": 1, "steps": 25, "syn_steps": 10, "ema_decay": 0.9},
}
DM10 = {"ipc": 10, "steps": 60, "batch_real": 64}


def _distil(method: str, cfg: dict, seed: int):
    m = dd.get(method)({**cfg, "eval_steps": 1}, seed=seed)
    for _ in lab.distill(m):
        pass
    return m


def _acc(x, y, seed: int, lr: float = EvalProtocol.lr) -> float:
    return evaluate_set(x, y, [500 + seed], EvalProtocol(lr=lr))["acc"]


@pytest.fixture(scope="module")
def ipc1():
    out = {"random real": [], **{m: [] for m in IPC1}, "nets": {}}
    for s in SEEDS:
        x, y = random_real(1, s)
        out["random real"].append(_acc(x, y, s))
        for name, cfg in IPC1.items():
            m = _distil(name, cfg, s)
            out[name].append(_acc(m.images(), m.labels(), s, m.eval_lr()))
            out["nets"][(name, s)] = m
    return out


def _gain_holds(acc: list, base: list, floor: float) -> tuple[bool, np.ndarray]:
    gains = np.asarray(acc) - np.asarray(base)
    return bool(gains.mean() > max(gains.std(ddof=1), floor)), gains


@pytest.mark.parametrize("name", ["dc", "mtt", "ftd"])
def test_distilled_ipc1_beats_random_real_ipc1(ipc1, name):
    ok, gains = _gain_holds(ipc1[name], ipc1["random real"], 0.05)
    print(f"\n{name} ipc 1: {ipc1[name]} random real: {ipc1['random real']} gains {gains}")
    assert ok and all(g > 0 for g in gains), (name, ipc1[name], ipc1["random real"], gains)


def test_dm_ipc10_beats_random_real_ipc10():
    acc, base = [], []
    for s in SEEDS:
        x, y = random_real(10, s)
        base.append(_acc(x, y, s))
        m = _distil("dm", DM10, s)
        acc.append(_acc(m.images(), m.labels(), s))
    ok, gains = _gain_holds(acc, base, 0.005)
    print(f"\ndm ipc 10: {acc} random real: {base} gains {gains}")
    assert ok, (acc, base, gains)


def test_ftd_accumulated_trajectory_error_below_mtt(ipc1):
    err = {}
    for name in ("mtt", "ftd"):
        err[name] = []
        for s in SEEDS:
            m = ipc1["nets"][(name, s)]
            rows = trajectory_error(m.images(), m.labels(), m.eval_lr(), m.experts, syn_steps=m.config.syn_steps,
                                    expert_epochs=m.config.expert_epochs, seed=s)
            err[name].append(accumulated_error(rows))
    d = np.asarray(err["mtt"]) - np.asarray(err["ftd"])
    print(f"\naccumulated trajectory error: {err} mtt - ftd {d}")
    assert d.mean() > d.std(ddof=1) and all(d > 0), (err, d)
