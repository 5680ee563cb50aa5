"""TAID probes (``lab.kd.logit.taid``): the interpolation parameter t over training, and the interpolated
target distributions p_t between a student and a teacher. They return DataFrames (figures:
``lab.viz.taid``).

- ``taid_trace(method_or_history)``: one row per training step with the value of t (and the
  momentum), from a TAID method (its per-step trace) or from a metrics table / list of step dicts
  that carry ``taid/t``.
- ``interpolated(student_logits, teacher_logits, t_values)``: p_t = softmax((1 - t) z_S + t z_T)
  for each t, one row per (t, class), averaged over the given rows (or for one row, ``row=i``).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd
import torch

from lab.errors import LabError

__all__ = ["taid_trace", "interpolated"]


def taid_trace(method_or_history) -> pd.DataFrame:
    """Columns: step, t (t after the step's update), and momentum when known.

    Accepts a TAID method (uses its recorded ``t_trace``), a DataFrame with a ``taid/t`` column (a run
    folder's metrics, ``step`` column optional), or a list of dicts with ``taid/t`` (and ``step``/``it``)."""
    obj = method_or_history
    if hasattr(obj, "t_trace"):
        rows = list(obj.t_trace)
        if not rows:
            raise LabError(f"{getattr(obj, 'name', 'method')} has no t trace yet; train it for at least one step")
        return pd.DataFrame(rows, columns=["step", "t", "momentum"])
    if isinstance(obj, pd.DataFrame):
        df = obj
    elif isinstance(obj, (list, tuple)):
        df = pd.DataFrame(list(obj))
    else:
        raise LabError(f"taid_trace got a {type(obj).__name__}; allowed: a TAID method, a metrics DataFrame with "
                       "'taid/t', or a list of step dicts with 'taid/t'")
    if "taid/t" not in df.columns:
        raise LabError(f"the history has no 'taid/t' column (columns: {', '.join(map(str, df.columns))}); "
                       "allowed: the metrics of a taid run")
    df = df[df["taid/t"].notna()]
    step = df["step"] if "step" in df else df["it"] if "it" in df else pd.Series(np.arange(1, len(df) + 1), index=df.index)
    out = pd.DataFrame({"step": step.to_numpy().astype(int), "t": df["taid/t"].to_numpy(dtype=float)})
    out["momentum"] = df["taid/momentum"].to_numpy(dtype=float) if "taid/momentum" in df else np.nan
    return out.reset_index(drop=True)


def _2d(z, name) -> torch.Tensor:
    t = z.detach().cpu() if torch.is_tensor(z) else torch.as_tensor(np.asarray(z))
    t = t.to(torch.float64)
    if t.ndim == 1:
        t = t[None]
    if t.ndim < 2 or t.shape[-1] < 2:
        raise LabError(f"{name} has shape {tuple(t.shape)}; allowed: logits (n, C) or (n, L, V) with C >= 2")
    return t.reshape(-1, t.shape[-1])


def interpolated(student_logits, teacher_logits, t_values: Iterable[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
                 row: int | None = None, temperature: float = 1.0) -> pd.DataFrame:
    """The TAID targets p_t = softmax(((1 - t) z_S + t z_T) / T) for each t in ``t_values``.

    Columns: t, cls, prob (mean over rows, or of row ``row``), entropy (mean entropy of p_t in nats),
    kl_to_teacher (mean KL(p_teacher || p_t)). t = 0 is the student, t = 1 the teacher."""
    s, te = _2d(student_logits, "student_logits"), _2d(teacher_logits, "teacher_logits")
    if s.shape != te.shape:
        raise LabError(f"student_logits {tuple(s.shape)} and teacher_logits {tuple(te.shape)} differ; "
                       "allowed: the same shape")
    if row is not None:
        if not (isinstance(row, int) and 0 <= row < s.shape[0]):
            raise LabError(f"row={row!r} is out of range; allowed: an integer in [0, {s.shape[0] - 1}] or None")
        s, te = s[row:row + 1], te[row:row + 1]
    ts = [float(v) for v in t_values]
    if not ts or any(not (0.0 <= v <= 1.0) for v in ts):
        raise LabError(f"t_values={list(t_values)!r}; allowed: a non-empty list of numbers in [0, 1]")
    if not float(temperature) > 0:
        raise LabError(f"temperature={temperature!r}; allowed: a number > 0")
    log_pt = torch.log_softmax(te / temperature, -1)
    frames = []
    for v in ts:
        logp = torch.log_softmax(((1 - v) * s + v * te) / temperature, -1)
        p = logp.exp()
        ent = float(-(p * logp).sum(-1).mean())
        kl = float((log_pt.exp() * (log_pt - logp)).sum(-1).mean())
        frames.append(pd.DataFrame({"t": v, "cls": np.arange(p.shape[-1]), "prob": p.mean(0).numpy(),
                                    "entropy": ent, "kl_to_teacher": kl}))
    return pd.concat(frames, ignore_index=True)
