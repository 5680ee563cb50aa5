"""The training loop is a generator; callbacks hang off it.

    for state in lab.distill(method, steps=500):
        if state.it % 100 == 0:
            print(state.it, state.out.losses)

Anything with ``sample_batch(it)``, ``step(batch, it)``, ``it``, ``total_steps``,
``state_dict()`` and ``load_state_dict()`` can be trained: distillation methods and
teacher training alike.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from lab.errors import LabError
from lab.trainable import StepOutput  # noqa: F401 - re-exported


@dataclass
class LoopState:
    it: int  # number of completed steps
    total: int
    out: StepOutput
    trainable: Any


class Callback:
    def on_start(self, trainable, total: int) -> None: ...
    def on_step(self, state: LoopState) -> None: ...
    def on_end(self, state: LoopState | None) -> None: ...
    def close(self) -> None: ...

    def state_dict(self) -> dict | None:
        return None

    def load_state_dict(self, sd: dict) -> None: ...


def train(trainable, steps: int | None = None, callbacks: Iterable[Callback] = ()) -> Iterator[LoopState]:
    """Run ``trainable`` from its current step to ``steps`` (default: its own total), yielding each state."""
    total = int(steps) if steps is not None else int(trainable.total_steps)
    if total < 1:
        raise LabError(f"steps must be a positive integer, got {steps!r}")
    callbacks = list(callbacks)
    for cb in callbacks:
        cb.on_start(trainable, total)
    state = None
    try:
        while trainable.it < total:
            it = trainable.it
            batch = trainable.sample_batch(it)
            out = trainable.step(batch, it)
            trainable.it = it + 1
            state = LoopState(trainable.it, total, out, trainable)
            for cb in callbacks:
                cb.on_step(state)
            yield state
        for cb in callbacks:
            cb.on_end(state)
    finally:
        for cb in callbacks:
            cb.close()


def distill(method, steps: int | None = None, callbacks: Iterable[Callback] = ()) -> Iterator[LoopState]:
    """The distillation loop: alias of :func:`train` for a :class:`~lab.methods.Method`."""
    return train(method, steps, callbacks)


def run_to_end(trainable, steps=None, callbacks=()) -> LoopState | None:
    state = None
    for state in train(trainable, steps, callbacks):
        pass
    return state


# ---------------------------------------------------------------- callbacks
class ProgressBar(Callback):
    def __init__(self, desc: str = "", every: int = 10, disable: bool | None = None):
        self.desc, self.every, self.disable, self.bar = desc, every, disable, None

    def on_start(self, trainable, total):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=trainable.it, desc=self.desc or getattr(trainable, "name", "train"),
                        disable=self.disable, leave=False, dynamic_ncols=True)

    def on_step(self, state):
        if self.bar is None:
            return
        self.bar.update(1)
        if state.it % self.every == 0:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in list(state.out.losses.items())[:3]}, refresh=False)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class NaNGuard(Callback):
    def on_step(self, state):
        for k, v in state.out.losses.items():
            if not math.isfinite(float(v)):
                raise FloatingPointError(f"loss {k!r} became {v} at step {state.it}; lower the learning rate")


class EMA(Callback):
    """Exponential moving average of the trainable's ``ema_nets()``; copied into them at the end."""

    def __init__(self, decay: float = 0.999):
        if not 0.0 <= decay < 1.0:
            raise LabError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay, self.shadow = decay, None

    def _nets(self, trainable):
        return trainable.ema_nets() if hasattr(trainable, "ema_nets") else {}

    def on_start(self, trainable, total):
        if self.shadow is None:
            self.shadow = {k: copy.deepcopy(n.state_dict()) for k, n in self._nets(trainable).items()}

    @torch.no_grad()
    def on_step(self, state):
        for k, net in self._nets(state.trainable).items():
            if k not in self.shadow:  # a net created mid-run (a new stage) starts its own average
                self.shadow[k] = copy.deepcopy(net.state_dict())
                continue
            sh = self.shadow[k]
            for name, p in net.state_dict().items():
                if p.dtype.is_floating_point and sh[name].shape == p.shape:
                    sh[name].mul_(self.decay).add_(p.detach(), alpha=1 - self.decay)
                else:
                    sh[name].copy_(p)

    def on_end(self, state):
        if state is None:
            return
        for k, net in self._nets(state.trainable).items():
            if k in self.shadow:
                net.load_state_dict(self.shadow[k])

    def state_dict(self):
        return {"decay": self.decay, "shadow": self.shadow}

    def load_state_dict(self, sd):
        self.decay, self.shadow = sd["decay"], sd["shadow"]


class Recorder(Callback):
    """Keeps one tidy row per logged step; with a Run it flushes to metrics.csv and writes snapshots."""

    def __init__(self, run=None, every: int = 10, snapshot_every: int = 0):
        self.run, self.every, self.snapshot_every = run, every, snapshot_every
        self.rows: list[dict] = []

    def on_step(self, state):
        if state.it % self.every == 0 or state.it == state.total:
            self.rows.append({"step": state.it, "stage": state.out.stage, **state.out.row()})
            if self.run is not None and (len(self.rows) % 10 == 0 or state.it == state.total):
                self.run.write_metrics(self.rows)
        if self.run is not None and self.snapshot_every and state.it % self.snapshot_every == 0:
            arrays = dict(state.out.internals)
            if hasattr(state.trainable, "snapshot"):
                arrays.update(state.trainable.snapshot())
            if arrays:
                self.run.write_snapshot(state.it, {k: _np(v) for k, v in arrays.items()})

    def on_end(self, state):
        if self.run is not None:
            self.run.write_metrics(self.rows)

    def close(self):
        if self.run is not None and self.rows:
            self.run.write_metrics(self.rows)

    def frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows)

    def state_dict(self):
        return {"rows": self.rows}

    def load_state_dict(self, sd):
        self.rows = [dict(r) for r in sd["rows"]]


class Checkpoint(Callback):
    """Saves the trainable and every callback's state to the run folder every ``every`` steps and at the end."""

    def __init__(self, run, every: int = 500, callbacks: Iterable[Callback] = ()):
        self.run, self.every, self.callbacks = run, every, list(callbacks)

    def save(self, trainable):
        cb_states = {type(cb).__name__: cb.state_dict() for cb in self.callbacks if cb.state_dict() is not None}
        self.run.save_checkpoint({"trainable": trainable.state_dict(), "callbacks": cb_states})

    def on_step(self, state):
        if self.every and state.it % self.every == 0 and state.it != state.total:
            self.save(state.trainable)

    def on_end(self, state):
        if state is not None:
            self.save(state.trainable)


def _np(v):
    if torch.is_tensor(v):
        return v.detach().cpu().numpy()
    return np.asarray(v)
