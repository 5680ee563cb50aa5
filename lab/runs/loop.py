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
import time
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from lab.errors import DivergenceError, LabError
from lab.io import flatten_state
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
            out = _step(trainable, batch, it)
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


def _step(trainable, batch, it: int) -> StepOutput:
    """One step, under the trainable's autocast (``set_precision``); under torchrun (``_world`` set by
    :func:`lab.runs.distributed.wrap`) on this rank's slice of the global batch, with the losses and metrics
    averaged across ranks."""
    world = getattr(trainable, "_world", None)
    if world is None:
        with trainable.autocast():
            out = trainable.step(batch, it)
        trainable.end_step()
        return out
    from lab.runs import distributed  # lazy: only under torchrun

    rank, size = world
    n = distributed.global_batch_size(trainable, batch)
    with distributed.local_step(trainable, n, size), trainable.autocast():
        out = trainable.step(distributed.shard(batch, n, rank, size), it)
    trainable.end_step()
    if it == 0 or (it + 1) % distributed.SYNC_CHECK_EVERY == 0 or it + 1 >= trainable.total_steps:
        distributed.check_in_sync(trainable, it + 1)
    return distributed.reduce_output(out)


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
        from tqdm.auto import tqdm  # lazy: progress bar only when shown

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


class Guard(Callback):
    """Stops a diverging run before anything bad is saved.

    After every step it checks each loss term (finite, and not beyond ``factor`` times the running median
    of its own magnitude over the last ``window`` steps, from its second step on: a divergence at lr 1000 is
    10^10 after ONE step, so waiting for a longer warm-up would let the median itself diverge), and
    every parameter and gradient of the trainable's networks (finite; under fp16 the parameters only, since the
    loss scaler skips a step whose scaled gradient overflowed). A failure raises
    :class:`~lab.errors.DivergenceError` naming the step and the term. It sits before the checkpoint
    callback, so the bad step is never checkpointed; the checkpoint itself refuses non-finite optimiser
    state (:func:`assert_finite_state`).

    ``factor`` is deliberately loose (1e4 by default, with the median floored at ``floor``): a stage change
    or a noisy adversarial term moves a loss by a few times, a divergence by orders of magnitude."""

    def __init__(self, factor: float = 1e4, window: int = 50, warmup: int = 1, floor: float = 1e-2,
                 check_params: bool = True):
        if not factor > 1:
            raise LabError(f"invalid guard factor {factor!r}; allowed: a number > 1 (e.g. 1e4)")
        self.factor, self.window, self.warmup, self.floor = float(factor), int(window), int(warmup), float(floor)
        self.check_params = check_params
        self.hist: dict[str, list[float]] = {}

    def on_step(self, state):
        step = state.it
        for k, v in state.out.losses.items():
            v = float(v)
            if not math.isfinite(v):
                raise DivergenceError(step, f"loss {k!r}", f"is {v}")
            key = f"{state.out.stage}/{k}"
            h = self.hist.setdefault(key, [])
            if len(h) >= self.warmup:
                med = float(np.median(h))
                if abs(v) > self.factor * max(med, self.floor):
                    raise DivergenceError(step, f"loss {k!r}",
                                          f"is {v:.4g}, over {self.factor:g}x its running median {med:.4g}")
            h.append(abs(v))
            if len(h) > self.window:
                del h[0]
        if self.check_params and hasattr(state.trainable, "nets"):
            # under fp16 the gradients are the SCALED ones: an overflow there is expected, and the GradScaler skips
            # that step and lowers the scale (the parameters, checked here, stay finite)
            scaled = getattr(state.trainable, "scaler", None) is not None
            # frozen tensors (a teacher, a target copy) are skipped: training cannot make them diverge
            named = [(f"{name}.{pname}", p) for name, net in state.trainable.nets().items()
                     for pname, p in net.named_parameters() if p.requires_grad]
            tensors = [p for _, p in named] + ([] if scaled else [p.grad for _, p in named if p.grad is not None])
            # one fused norm over all of them (one synchronisation, not one per tensor: 16-33 ms a step on the
            # digits UNet and DMD, bench/scaling.py overhead); only when it is not finite are the tensors walked to
            # name the bad one (a finite tensor whose norm overflows is walked too, and passes)
            if tensors and not bool(torch.isfinite(torch.stack(torch._foreach_norm(tensors))).all()):
                for pname, p in named:
                    if not bool(torch.isfinite(p).all()):
                        raise DivergenceError(step, f"parameter {pname}", "is not finite")
                    if not scaled and p.grad is not None and not bool(torch.isfinite(p.grad).all()):
                        raise DivergenceError(step, f"gradient of {pname}", "is not finite")

    def state_dict(self):
        return {"hist": self.hist}

    def load_state_dict(self, sd):
        self.hist = {k: [float(x) for x in v] for k, v in sd.get("hist", {}).items()}


NaNGuard = Guard  # the name it had before it looked beyond the loss


def assert_finite_state(state: dict, step: int) -> None:
    """Raise :class:`~lab.errors.DivergenceError` if any floating tensor in a (nested) state is not finite:
    nets, optimiser moments, EMA shadows. Called before a checkpoint is written."""
    skel, tensors = flatten_state(state)
    bad = {k for k, t in tensors.items() if t.dtype.is_floating_point and not bool(torch.isfinite(t).all())}
    if not bad:
        return
    where = []

    def walk(node, path):
        if isinstance(node, dict):
            if node.get("__tensor__") in bad:
                where.append(path)
                return
            for k, v in node.items():
                walk(v, f"{path}.{k}" if path else k)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}.{i}")

    walk(skel, "")
    shown = ", ".join(p.replace(".__dict_int__", "").replace(".__tuple__", "") for p in where[:3])
    raise DivergenceError(step, "state to checkpoint", f"has non-finite values in {shown}"
                                                        f"{' and more' if len(where) > 3 else ''}")


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

    def on_start(self, trainable, total):
        # a resumed run: metrics.csv may hold rows logged after the checkpoint; cut it back to the checkpoint's
        if self.run is not None and trainable.it > 0:
            if self.rows:
                self.run.write_metrics(self.rows)
            elif (self.run.folder / "metrics.csv").exists():
                self.run.path("metrics.csv").unlink()

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
        import pandas as pd  # lazy: pandas only for the frame

        return pd.DataFrame(self.rows)

    def state_dict(self):
        return {"rows": self.rows}

    def load_state_dict(self, sd):
        self.rows = [dict(r) for r in sd["rows"]]


class Checkpoint(Callback):
    """Saves the trainable and every callback's state to the run folder: at step 0 of a fresh run, every
    ``every`` steps (or, with ``every=None``, whenever ``seconds`` of wall time, or 20 times the last save's own
    duration if that is longer, have passed since the last save: a kill loses at most that much work, and saving
    a large state, about 1 s for DMD, never takes more than about 5% of the run), and at the end. Each checkpoint is one
    verified file committed in one rename; a state with non-finite values is never written."""

    def __init__(self, run, every: int | None = None, callbacks: Iterable[Callback] = (), seconds: float = 5.0,
                 extra: dict | None = None):
        if every is not None and (not isinstance(every, int) or isinstance(every, bool) or every < 1):
            raise LabError(f"invalid checkpoint interval {every!r}; allowed: a positive number of steps, or None "
                           f"(every {seconds:g} s)")
        self.run, self.every, self.seconds, self.callbacks = run, every, float(seconds), list(callbacks)
        self.extra = dict(extra or {})
        self.last_step: int | None = None
        self._t = time.monotonic()

    def save(self, trainable):
        cb_states = {type(cb).__name__: cb.state_dict() for cb in self.callbacks if cb.state_dict() is not None}
        state = {"trainable": trainable.state_dict(), "callbacks": cb_states, **self.extra}
        assert_finite_state(state, trainable.it)
        t0 = time.monotonic()
        self.run.save_checkpoint(state)
        self.last_step, self._t = trainable.it, time.monotonic()
        self._save_cost = self._t - t0

    def on_start(self, trainable, total):
        self._t = time.monotonic()
        if trainable.it == 0 and not self.run.has_checkpoint():
            self.save(trainable)  # every run folder is resumable, even one killed in its first seconds

    def on_step(self, state):
        if state.it == state.total:
            return  # on_end saves the final state
        wait = max(self.seconds, 20.0 * getattr(self, "_save_cost", 0.0))
        due = (state.it % self.every == 0) if self.every else (time.monotonic() - self._t >= wait)
        if due:
            self.save(state.trainable)

    def on_end(self, state):
        if state is not None:
            self.save(state.trainable)


def _np(v):
    if torch.is_tensor(v):
        return v.detach().cpu().numpy()
    return np.asarray(v)
