"""The runs root as a table: every run folder under it with what it ran and how good its model is.

    runs_table(root)              one row per run folder (newest first): kind, method, data, teacher, steps,
                                  seconds, best distance and the NFE it was reached at
    quality_points(table, root)   one row per (run, NFE): the distance to data of the run's model at that NFE
    pareto(points)                the runs no other run beats on both NFE and distance (per data set)
    filter_runs(df, kind=...)     the rows whose column values are among the chosen ones
    snapshot(folder, step)        the arrays a run recorded at one step (its student's samples, targets)
    confine(path, *roots)         a path resolved and refused when it leaves its roots (symlinks, ``..``)

The root is ``$LAB_RUNS`` (default ``runs``, relative to the working directory): :func:`lab.io.runs_root`, the
one reader of it (``lab runs list`` uses it too), re-exported here.

Distances are measured here, the same way for every run (a fixed sample size and seed, cached per model file):
sliced Wasserstein to fresh data for 2D (n = 2000), FD-digits for image data (n = 500).
A model's card metrics are not used: zoo cards are measured at other sizes, and distances at different sample
sizes do not compare (both are biased by n).
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lab.data import images, toy2d
from lab.data import resolve as resolve_data
from lab.diffusion.generators import load_generator
from lab.errors import LabError
from lab.io import read_json, runs_root
from lab.metrics import noise_floor, sliced_wasserstein
from lab.runs.run import Run

#: NFEs at which a generator without native NFEs (an ODE sampler, e.g. a teacher) is measured
EVAL_NFE = (1, 2, 4, 50)
#: sample sizes of the distance measurements (2D points, images)
N_POINTS, N_IMAGES = 2000, 500
COLUMNS = ["name", "kind", "method", "data", "teacher", "steps", "steps_done", "seconds", "best_distance", "nfe",
           "metric", "native_nfe", "has_model", "modified", "run"]


def confine(path, *roots) -> Path:
    """``path`` fully resolved (every symlink followed, ``..`` collapsed), refused with a one-line LabError
    unless it lies inside one of ``roots`` (resolved the same way). A relative ``path`` is relative to the
    working directory, like any path."""
    if not roots:
        raise LabError("confine needs at least one root")
    try:
        p = Path(path).expanduser().resolve()
    except (OSError, RuntimeError, ValueError) as e:  # a symlink loop, a NUL byte
        raise LabError(f"cannot resolve the path {str(path)!r}: {e}") from None
    allowed = [Path(r).expanduser().resolve() for r in roots]
    if not any(p == r or p.is_relative_to(r) for r in allowed):
        raise LabError(f"{str(path)!r} leaves the allowed folders; allowed: folders under "
                       f"{', '.join(str(r) for r in allowed)}")
    return p


def run_folders(root=None) -> list[Path]:
    """Every run folder (a folder with ``config.json``) under ``root``, newest first; a folder reached through a
    symlink that leaves the root is skipped."""
    root = Path(root) if root is not None else runs_root()
    if not root.is_dir():
        return []
    out = []
    for cfg in root.rglob("config.json"):
        try:
            confine(cfg.parent, root)
        except LabError:
            continue
        out.append(cfg.parent)
    return sorted(out, key=lambda p: (-_mtime(p), str(p)))


def _mtime(folder: Path) -> float:
    """When the run last wrote its record (model, metrics or config)."""
    return max([(folder / f).stat().st_mtime for f in ("model.json", "metrics.csv", "config.json")
                if (folder / f).is_file()] or [0.0])


def _model_stamp(folder: Path) -> float:
    p = folder / "model.json"
    return p.stat().st_mtime if p.is_file() else 0.0


def _card(folder: Path) -> dict:
    p = folder / "model.json"
    if not p.is_file():
        return {}
    spec = read_json(p)
    return spec if isinstance(spec, dict) else {}


def _evaluable(data: str, root: Path) -> bool:
    """A named data set (``toy2d:NAME``, ``digits``, ...) or a points file inside the runs root; never a file
    or an image folder elsewhere."""
    if data.startswith("toy2d:") or data in toy2d.names():
        return True
    if data.split(":", 1)[0] in images.names():
        return True
    if data.lower().endswith((".npy", ".csv")):
        try:
            confine(data, root)
        except LabError:
            return False
        return True
    return False


@functools.lru_cache(maxsize=256)
def _measure(folder: str, stamp: float, data: str, device: str) -> tuple:
    """(metric, ((nfe, distance, floor), ...)) of the model in ``folder`` (``stamp``: model.json's mtime, so a
    rewritten model is measured again)."""
    gen = load_generator(folder, device).eval()
    nfes = tuple(gen.native_nfe) or EVAL_NFE
    out = []
    with torch.no_grad():
        if images.is_image_spec(data):
            from lab.metrics import images as im  # inside: scipy and scikit-learn only when images are measured

            name = data.split(":", 1)[0]  # "digits:test" is the digits data set too
            n_classes = int(getattr(getattr(getattr(gen, "denoiser", None), "net", None), "n_classes", 0) or 10)
            y = (torch.arange(N_IMAGES) % n_classes).to(gen.device)  # labels cycled, as the zoo's cards
            floor = float(im.noise_floor(name, n=N_IMAGES)["fd"])
            for k in nfes:
                x = gen.sample(N_IMAGES, nfe=k, seed=1, y=y).x
                out.append((k, float(im.image_metrics(x.cpu(), y.cpu(), data=name)["fd"]), floor))
            return "fd", tuple(out)
        source = resolve_data(data)
        ref = source.sample(N_POINTS, 99)
        floor = float(noise_floor(source, N_POINTS))
        for k in nfes:
            x = gen.sample(N_POINTS, nfe=k, seed=1).x.cpu()
            out.append((k, float(sliced_wasserstein(x, ref)), floor))
    return "swd", tuple(out)


def measure(folder, root=None, device="cpu") -> pd.DataFrame:
    """The distance to data of the model saved in run ``folder`` at each of its native NFEs (a generator
    without native NFEs at ``EVAL_NFE``): columns nfe, distance, floor, metric. Empty for a folder without a
    generator model (a KD run, a run still training) or whose data is a file outside the runs root.
    Measured on ``device`` and cached per model file."""
    folder, root = Path(folder), Path(root) if root is not None else runs_root()
    cols = ["nfe", "distance", "floor", "metric"]
    try:
        card = _card(folder)
    except LabError:
        return pd.DataFrame(columns=cols)
    data = str((card.get("card") or {}).get("data") or "")
    if not card or "nets" not in card or not _evaluable(data, root):
        return pd.DataFrame(columns=cols)
    metric, rows = _measure(str(folder), _model_stamp(folder), data, str(device))
    return pd.DataFrame([(k, d, f, metric) for k, d, f in rows], columns=cols)


def _record(folder: Path, root: Path, evaluate: bool) -> dict:
    name = str(folder.relative_to(root)) if folder != root else folder.name
    rec = {"name": name, "run": str(folder), "modified": pd.Timestamp(_mtime(folder), unit="s")}
    try:
        run = Run.open(folder)
        s = run.summary()
        card = _card(folder)
    except LabError as e:
        return {**rec, "kind": f"unreadable: {e}"}
    info = card.get("card") or {}
    seconds = info.get("train_seconds")
    rec.update(kind=s["kind"], method=s["method"] or ("teacher" if s["kind"] == "teacher" else ""),
               data=s["data"] or str(run.config.get("task", "")), teacher=s["teacher"] or "",
               steps=s["steps"] if s["steps"] != "" else None, steps_done=s["steps_done"],
               seconds=float(seconds) if isinstance(seconds, (int, float)) else None,
               native_nfe=", ".join(str(k) for k in card.get("native_nfe", [])), has_model=s["has_model"])
    if evaluate and s["has_model"] and s["kind"] in ("distill", "teacher"):
        try:
            q = measure(folder, root)
        except (LabError, RuntimeError, ValueError, OSError) as e:  # a damaged model is listed, not fatal
            return {**rec, "metric": f"not measured: {' '.join(str(e).split())[:200] or type(e).__name__}"}
        if len(q):
            best = q.loc[q.distance.idxmin()]
            rec.update(best_distance=float(best.distance), nfe=int(best.nfe), metric=str(best.metric))
    return rec


def runs_table(root=None, evaluate: bool = True, progress=None) -> pd.DataFrame:
    """One row per run folder under ``root`` (default :func:`runs_root`), newest first: name (the folder
    relative to the root), kind (distill, teacher, kd, or "unreadable: why"), method, data, teacher, steps (of
    the recipe), steps_done, seconds (training wall clock, from the model card), best_distance (the model's
    smallest distance to data over its NFEs, see :func:`measure`; empty without ``evaluate``), nfe (where it
    was reached), metric, native_nfe, has_model, modified and run (the folder). ``progress(done, total)`` is
    called after each folder (measuring a model the first time takes up to a second)."""
    root = Path(root) if root is not None else runs_root()
    folders = run_folders(root)
    rows = []
    for i, f in enumerate(folders):
        rows.append(_record(f, root, evaluate))
        if progress is not None:
            progress(i + 1, len(folders))
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["nfe"] = df["nfe"].astype("Int64")
    df["steps"] = pd.to_numeric(df["steps"], errors="coerce").astype("Int64")
    df["steps_done"] = pd.to_numeric(df["steps_done"], errors="coerce").astype("Int64")
    for c in ("seconds", "best_distance"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def quality_points(table: pd.DataFrame, root=None) -> pd.DataFrame:
    """One row per (run, NFE) for the runs of ``table`` (a :func:`runs_table`) that have a measured model:
    name, method, data, nfe, distance, floor, metric."""
    cols = ["name", "method", "data", "nfe", "distance", "floor", "metric"]
    frames = []
    for r in table.itertuples():
        if isinstance(r.best_distance, float) and not math.isnan(r.best_distance):
            q = measure(r.run, root)
            frames.append(q.assign(name=r.name, method=r.method, data=r.data))
    if not frames:
        return pd.DataFrame(columns=cols)
    out = pd.concat(frames, ignore_index=True)[cols]
    out["nfe"] = out["nfe"].astype(int)
    return out


def pareto(df: pd.DataFrame, x: str = "nfe", y: str = "distance", by: str | None = "data") -> pd.DataFrame:
    """The rows of ``df`` on the Pareto front of (``x``, ``y``), both lower-is-better: a row is kept unless
    another row has ``x`` and ``y`` no larger and one of them smaller. With ``by``, one front per group
    (distances on different data sets do not compare). Sorted by group then ``x``; rows with a missing
    ``x`` or ``y`` are left out."""
    d = df.dropna(subset=[x, y])
    groups = d.groupby(by, sort=True) if by else [(None, d)]
    keep = []
    for _, g in groups:
        g = g.sort_values([x, y], kind="stable")
        gx, gy = g[x].to_numpy(dtype=float), g[y].to_numpy(dtype=float)
        for i, idx in enumerate(g.index):
            beaten = (gx <= gx[i]) & (gy <= gy[i]) & ((gx < gx[i]) | (gy < gy[i]))
            if not beaten.any():
                keep.append(idx)
    return d.loc[keep]


def filter_runs(df: pd.DataFrame, **chosen) -> pd.DataFrame:
    """The rows of ``df`` whose column ``c`` is among ``chosen[c]`` for every given column (an empty or None
    choice does not filter)."""
    for col, values in chosen.items():
        if col not in df.columns:
            raise LabError(f"unknown run column {col!r}; allowed: {', '.join(df.columns)}")
        if values:
            df = df[df[col].isin(list(values))]
    return df


def snapshot_steps(folder) -> list[int]:
    """The training steps at which run ``folder`` recorded a snapshot, in order."""
    return [int(p.stem.split("_", 1)[1]) for p in Run(folder).snapshots() if p.stem.split("_", 1)[1].isdigit()]


def snapshot(folder, step: int | None = None) -> dict:
    """The arrays run ``folder`` recorded at ``step`` (default: the last snapshot), plus ``step``: ``samples``
    (the student at its smallest native NFE, from fixed noise), ``samples_nfe``, and where the method has them
    the regression targets (``targets_x_t``, ``targets_target``, ``targets_teacher``). A LabError when the run
    has no snapshot at that step."""
    steps = snapshot_steps(folder)
    if not steps:
        raise LabError(f"{folder} has no snapshots")
    step = steps[-1] if step is None else int(step)
    if step not in steps:
        raise LabError(f"{folder} has no snapshot at step {step}; allowed: {', '.join(map(str, steps))}")
    path = Run(folder).path(f"snapshots/step_{step:07d}.npz")  # refuses a symlinked snapshot
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise LabError(f"{path} is not a readable snapshot ({e})") from None
    out["step"] = step
    return out


__all__ = ["EVAL_NFE", "runs_root", "confine", "run_folders", "measure", "runs_table",
           "quality_points", "pareto", "filter_runs", "snapshot_steps", "snapshot"]
