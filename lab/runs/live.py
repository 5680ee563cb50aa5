"""Distillation you can watch: a method trained on demand, a few steps at a time, and what a view draws.

    s = LiveSession("dmd", "toy2d/8gaussians/teacher", field=lab.probes.fields.method_field)
    s.advance(10)                 # exactly 10 more training steps
    f = s.frame()                 # teacher and student samples from the same noise, the field, losses, distances
    s.save("runs/my-live-dmd")    # a run folder like `lab distill` writes: the Generators page lists it

The session keeps the training loop (:func:`lab.runs.loop.train`, a generator) suspended between calls, so a
page can play, pause and step it. Same method, teacher, data, config and seed: the same numbers, step for step,
whether or not frames are drawn in between (frames use their own seeded noise, never the method's stream).

Custom data: :func:`points_from_upload` checks an uploaded ``.npy``/``.csv`` of (N, 2) points and makes it a
:class:`~lab.data.toy2d.PointCloud`; :func:`train_points_teacher` trains a small flow-matching teacher on it
(a few seconds on a CPU core, with a progress callback).

The method's own field comes from ``lab.probes.fields`` (a layer above this one), so it is passed in:
``LiveSession(..., field=method_field)``.
"""
from __future__ import annotations

import base64
import dataclasses
import io
import json
import re
import typing
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from lab.config import config_from_dict, describe_field
from lab.data.toy2d import PointCloud, Source
from lab.data.toy2d import resolve as resolve_data
from lab.diffusion.generators import Generator, make_noise
from lab.errors import DivergenceError, LabError
from lab.io import atomic_write
from lab.methods import MethodConfig, get_method, list_methods
from lab.metrics import noise_floor, sliced_wasserstein
from lab.runs.loop import Callback, Checkpoint, Guard, Recorder, train
from lab.runs.recipes import built_nets
from lab.runs.run import Run
from lab.runs.session import SteppedSession
from lab.trainable import resolve_reference

#: uploads: at most this many bytes, and between MIN_POINTS and MAX_POINTS points
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MIN_POINTS, MAX_POINTS = 16, 100_000
#: uploaded points are centred and scaled so that 99.5% of their coordinates lie within +-POINTS_RANGE (the zoo's scale)
POINTS_RANGE = 2.0
#: the drawing canvas: CANVAS_CELLS x CANVAS_CELLS cells over [-CANVAS_LIM, CANVAS_LIM]^2
CANVAS_LIM, CANVAS_CELLS, CANVAS_PER_CELL = 3.0, 40, 24
#: the on-the-spot teacher for custom points: about 5 s on one CPU core; on moons it reaches the zoo teacher's
#: distance to data (SWD 0.069 vs 0.069; 300 steps of the zoo recipe: 0.150)
QUICK_TEACHER = {"steps": 2000, "batch": 512, "lr": 4e-3,
                 "net": {"type": "mlp", "hidden": 128, "depth": 3, "t_dim": 32}}
#: the teacher's number of steps in the frames (the zoo's TEACHER_NFE; runs sits below the zoo)
TEACHER_NFE = 50
#: the largest sizes a live session accepts (the Config's own bounds still apply)
LIVE_LIMITS = {"steps": 100_000, "batch": 8192, "n_particles": 20_000, "n_pairs": 100_000, "pair_steps": 256,
               "n_traj": 20_000}
#: run names the live page accepts: one folder name, no path
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


def methods_2d() -> list[str]:
    """The registered methods that train on 2D points (their ``data_kinds`` include "points")."""
    return [m for m in list_methods() if "points" in get_method(m).data_kinds]


def hyperparameters(method: str, own: int = 5) -> pd.DataFrame:
    """The main numeric hyperparameters of ``method``'s Config, for a form: steps, lr and batch, then up to
    ``own`` numeric fields of its own (declared below :class:`~lab.methods.MethodConfig`, the most specific
    class first). Columns: name, kind ("int" or "float"), default, allowed (the Config's words, and the live
    view's own limit where :data:`LIVE_LIMITS` has one)."""
    cfg_cls = get_method(method).Config
    hints = typing.get_type_hints(cfg_cls)
    base = {f.name for f in dataclasses.fields(MethodConfig)}
    names = ["steps", "lr", "batch"]
    for klass in cfg_cls.__mro__:
        if klass is MethodConfig or not dataclasses.is_dataclass(klass):
            break
        for name in klass.__dict__.get("__annotations__", {}):
            if name not in base and name not in names and hints.get(name) in (int, float) and len(names) < 3 + own:
                names.append(name)
    default = cfg_cls()
    return pd.DataFrame([{"name": n, "kind": hints[n].__name__, "default": getattr(default, n),
                          "allowed": describe_field(cfg_cls, n) + (f", at most {LIVE_LIMITS[n]:_} here"
                                                                    if n in LIVE_LIMITS else "")} for n in names])


def check_config(method: str, config: dict | None) -> dict:
    """``config`` (a dict of ``method``'s Config fields) validated by the Config itself; returns it. A bad value is
    the Config's one-line LabError (``invalid batch=1; allowed: an integer >= 2``). Sizes beyond
    :data:`LIVE_LIMITS` are refused too: a live session shares a busy laptop."""
    cfg = config_from_dict(get_method(method).Config, config)
    for name, top in LIVE_LIMITS.items():
        v = getattr(cfg, name, None)
        if isinstance(v, (int, float)) and v > top:
            raise LabError(f"invalid {name}={v!r} for the live view; allowed here: {describe_field(type(cfg), name)}, "
                           f"at most {top:_}")
    return dict(config or {})


# ------------------------------------------------------------------------------------------------ custom points
def points_from_upload(filename: str, raw: bytes, rescale: bool = True) -> PointCloud:
    """An uploaded ``.npy`` or ``.csv`` (comma separated, optional header) of (N, 2) points as a data source.

    Checked: at most 10 MB, a numeric array of shape (N, 2) with 16 <= N <= 100000, finite values. Anything else
    is one LabError line saying what is allowed. With ``rescale`` the points are centred and scaled so that 99.5%
    of their coordinates lie within +-2 (the zoo's scale, which the teacher's noise and the views assume)."""
    name = Path(str(filename)).name
    suffix = Path(name).suffix.lower()
    allowed = (f"a .npy or .csv file of at most {MAX_UPLOAD_BYTES // 2**20} MB holding an (N, 2) array of finite "
               f"numbers, {MIN_POINTS} <= N <= {MAX_POINTS:_}")
    if suffix not in (".npy", ".csv"):
        raise LabError(f"{name!r} is not a .npy or .csv file; allowed: {allowed}")
    if len(raw) > MAX_UPLOAD_BYTES:
        raise LabError(f"{name!r} is {len(raw) / 2**20:.1f} MB; allowed: {allowed}")
    try:
        if suffix == ".npy":
            arr = np.load(io.BytesIO(raw), allow_pickle=False)
        else:
            text = raw.decode("utf-8")
            try:
                arr = np.loadtxt(io.StringIO(text), delimiter=",", ndmin=2)
            except ValueError:  # a header line
                arr = np.loadtxt(io.StringIO(text), delimiter=",", ndmin=2, skiprows=1)
    except Exception as e:  # noqa: BLE001 - any parse failure is one clear line
        reason = " ".join(str(e).split())[:120] or type(e).__name__
        raise LabError(f"could not read points from {name!r} ({reason}); allowed: {allowed}") from None
    return points_from_array(arr, name, allowed, rescale)


def points_from_array(arr, name: str = "points", allowed: str | None = None, rescale: bool = True,
                      kind: str = "upload") -> PointCloud:
    """An (N, 2) array of finite numbers (16 <= N <= 100000) as a data source, checked as an upload is (one
    LabError line naming ``allowed``); with ``rescale`` centred and scaled so that 99.5% of the coordinates lie
    within +-2. Its spec is ``<kind>:<name>``."""
    allowed = allowed or (f"an (N, 2) array of finite numbers, {MIN_POINTS} <= N <= {MAX_POINTS:_}")
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
        raise LabError(f"{name!r} holds no numeric array; allowed: {allowed}")
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise LabError(f"{name!r} has shape {tuple(arr.shape)}; allowed: {allowed}")
    if not MIN_POINTS <= arr.shape[0] <= MAX_POINTS:
        raise LabError(f"{name!r} has {arr.shape[0]} points; allowed: {allowed}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise LabError(f"{name!r} contains NaN or infinite values; allowed: {allowed}")
    if rescale:
        arr = arr - arr.mean(0)
        s = float(np.quantile(np.abs(arr), 0.995))
        if not s > 0:
            raise LabError(f"{name!r}: all points are the same; allowed: {allowed}")
        arr = arr * (POINTS_RANGE / s)
    if np.abs(arr).max() > np.finfo(np.float32).max:
        raise LabError(f"{name!r} has values beyond the float32 range; allowed: {allowed}")
    return PointCloud(arr.astype(np.float32), name=Path(name).stem, spec=f"{kind}:{name}")


def canvas_grid(lim: float = CANVAS_LIM, n: int = CANVAS_CELLS) -> np.ndarray:
    """The drawing canvas: the centres of an ``n`` x ``n`` grid of cells covering [-lim, lim]^2, shape (n*n, 2).
    A page draws them as faint dots; lasso or box selections of them are painted cells."""
    c = (np.arange(n) + 0.5) / n * 2 * lim - lim
    xx, yy = np.meshgrid(c, c, indexing="xy")
    return np.stack([xx.ravel(), yy.ravel()], 1)


def points_from_cells(cells, lim: float = CANVAS_LIM, n: int = CANVAS_CELLS, per_cell: int = CANVAS_PER_CELL,
                      seed: int = 0) -> PointCloud:
    """Painted canvas cells (indices into :func:`canvas_grid`) as points: ``per_cell`` points uniform in each
    cell, seeded; not rescaled (the canvas is already on the zoo's scale). Fewer than 16 points, or an index off
    the grid, is one LabError line."""
    idx = np.unique(np.asarray(list(cells), dtype=np.int64))
    if idx.size and (idx.min() < 0 or idx.max() >= n * n):
        raise LabError(f"canvas cells must be indices from 0 to {n * n - 1}, got {int(idx.min())}..{int(idx.max())}")
    if idx.size * per_cell < MIN_POINTS:
        raise LabError(f"paint at least {-(-MIN_POINTS // per_cell)} cells ({MIN_POINTS} points); "
                       f"{idx.size} painted")
    centres = canvas_grid(lim, n)[idx]
    side = 2 * lim / n
    rng = np.random.default_rng(seed)
    pts = np.repeat(centres, per_cell, 0) + rng.uniform(-side / 2, side / 2, (idx.size * per_cell, 2))
    return points_from_array(pts, name=f"{idx.size}-cells", rescale=False, kind="drawn")


def cells_to_text(cells, n: int = CANVAS_CELLS) -> str:
    """Painted canvas cells as a short URL-safe text (the grid's bitmap, deflated, in base64): a link carries a
    drawing."""
    bits = np.zeros(n * n, np.uint8)
    bits[np.asarray(sorted(cells), dtype=np.int64)] = 1
    return base64.urlsafe_b64encode(zlib.compress(np.packbits(bits).tobytes(), 9)).decode().rstrip("=")


def cells_from_text(text: str, n: int = CANVAS_CELLS) -> list[int]:
    """The inverse of :func:`cells_to_text`; a text that is not such a bitmap is one LabError line."""
    allowed = f"a canvas bitmap of {n * n} cells as cells_to_text writes it (deflated, URL-safe base64)"
    try:
        d = zlib.decompressobj()
        raw = d.decompress(base64.urlsafe_b64decode(str(text) + "=" * (-len(str(text)) % 4)), -(-n * n // 8) + 1)
    except (ValueError, TypeError, zlib.error):
        raise LabError(f"invalid canvas {str(text)[:24]!r}; allowed: {allowed}") from None
    if len(raw) != -(-n * n // 8) or not d.eof or d.unused_data:
        raise LabError(f"invalid canvas {str(text)[:24]!r} ({len(raw)} bytes); allowed: {allowed}")
    return np.flatnonzero(np.unpackbits(np.frombuffer(raw, np.uint8))[: n * n]).tolist()


def train_points_teacher(source: Source, seed: int = 0, config: dict | None = None, device="cpu",
                         progress: Callable[[float], None] | None = None):
    """A flow-matching teacher for ``source`` trained here (:data:`QUICK_TEACHER`, overridden by ``config``);
    ``progress(fraction)`` is called every 20 steps and at the end. Returns its FlowGenerator."""
    from lab.diffusion.train import TeacherTraining  # inside: only custom data trains a teacher

    tr = TeacherTraining(source, {**QUICK_TEACHER, **(config or {})}, seed=seed, device=device)
    for state in train(tr, callbacks=[Guard()]):
        if progress is not None and (state.it % 20 == 0 or state.it == state.total):
            progress(state.it / state.total)
    gen = tr.generator()
    gen.card = {"data": source.spec, "recipe": {"trainer": "flow matching", "config": tr.config_dict(), "seed": seed},
                "note": "trained on the spot by lab.runs.live.train_points_teacher"}
    return gen


def check_run_name(name: str, root) -> Path:
    """``root / name`` for a new run folder: ``name`` is one folder name (letters, digits, ``.``, ``_``, ``-``; at
    most 80) and the folder does not exist yet (nothing is ever overwritten)."""
    name = str(name).strip()
    if not RUN_NAME.match(name):
        raise LabError(f"invalid run name {name[:40]!r}; allowed: 1 to 80 letters, digits, '.', '_' or '-', "
                       "starting with a letter or digit (no folders)")
    folder = Path(root) / name
    if folder.exists() or folder.is_symlink():
        raise LabError(f"{folder} already exists; choose another name (nothing is overwritten)")
    return folder


# ------------------------------------------------------------------------------------------------ the session
class DistanceTracker(Callback):
    """Sliced Wasserstein distance of the student's samples (fixed noise) to fresh data every ``every`` steps and
    at the start. Its noise and data have their own seeds: the method's random stream is untouched."""

    def __init__(self, session: "LiveSession", every: int):
        self.session, self.every = session, int(every)
        self.rows: list[dict] = []

    def on_start(self, trainable, total):
        if not self.rows:
            self.measure(trainable.it)

    def on_step(self, state):
        if state.it % self.every == 0 or state.it == state.total:
            self.measure(state.it)

    def measure(self, it: int) -> None:
        s = self.session
        self.rows.append({"step": int(it), "student": sliced_wasserstein(s.student_samples(z=s.z_eval), s.reference),
                          "teacher": s.teacher_swd, "floor": s.floor})

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["step", "student", "teacher", "floor"])


@dataclass
class LiveFrame:
    """Everything a live view draws, as data."""

    it: int                  # completed training steps
    total: int               # the run's length (config.steps)
    samples: pd.DataFrame    # model ("teacher" / "student"), x, y: the same noise through both
    nfe: dict                # model -> the NFE it was sampled at
    field: pd.DataFrame | None   # the method's own field (lab.probes.fields.method_field), None without one
    losses: pd.DataFrame     # step, stage, loss/... and the method's metrics: every step so far
    distance: pd.DataFrame   # step, student, teacher, floor: sliced Wasserstein to data, every few steps
    method: str
    done: bool
    error: str


class LiveSession(SteppedSession):
    """One method distilled on demand from one teacher on one data source, with one seed.

    ``method``: a registered method name whose ``data_kinds`` include "points". ``teacher``: a model reference
    (a zoo entry such as ``toy2d/8gaussians/teacher``, a model folder) or a loaded generator (then ``data`` is
    needed). ``data``: a data spec or Source (default: the teacher's). ``config``: overrides of the method's
    Config (validated by it). ``field(method) -> DataFrame``: the method's own field (``method_field``).
    ``n``: points per frame (each is a marker a browser redraws every frame: keep it small); ``n_distance``:
    points for the distance to data (measured every ``distance_every`` steps on its own fixed noise).
    """

    def __init__(self, method: str, teacher, data=None, config: dict | None = None, seed: int = 0, device="cpu",
                 field: Callable | None = None, n: int = 512, teacher_nfe: int = TEACHER_NFE,
                 distance_every: int = 25, teacher_ref: str | None = None, n_distance: int = 1000):
        if method not in methods_2d():
            raise LabError(f"unknown 2D method {method!r}; allowed: {', '.join(methods_2d())}")
        self.method_name, self.cls = method, get_method(method)
        self.overrides = check_config(method, config)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
            raise LabError(f"seed must be an integer in [0, 2**63), got {str(seed)[:40]!r}")
        self.seed, self.device = int(seed), torch.device(device)
        if isinstance(teacher, (str, Path)):
            r = resolve_reference(str(teacher), "teacher", self.device, data=None if data is None else str(
                data.spec if isinstance(data, Source) else data), train_if_missing=False, progress=False)
            self.teacher, self.teacher_ref = r.model, str(teacher)
            data = data if data is not None else r.data
        elif isinstance(teacher, Generator):
            if data is None:
                raise LabError("a loaded teacher needs its data (a data spec or Source)")
            self.teacher, self.teacher_ref = teacher.to(self.device), teacher_ref
        else:
            raise LabError(f"teacher must be a model reference or a generator, got {type(teacher).__name__}")
        self.source = resolve_data(data)
        if tuple(self.source.shape) != (2,):
            raise LabError(f"the live view is for 2D points; {self.source.spec} has samples of shape "
                           f"{tuple(self.source.shape)}")
        self.field_fn, self.n, self.teacher_nfe = field, int(n), int(teacher_nfe)
        self.distance_every = int(distance_every)
        self.z = make_noise(self.n, 2, seed=self.seed + 1234, device=self.device)  # the frames' noise
        self.z_eval = make_noise(int(n_distance), 2, seed=self.seed + 4321, device=self.device)  # the distances'
        self.reference = self.source.sample(int(n_distance), torch.Generator().manual_seed(self.seed + 777))
        self.floor = noise_floor(self.source, int(n_distance))
        with torch.no_grad():  # drawn once: the teacher does not change
            self.teacher_x = self.teacher.sample(z=self.z, nfe=self.teacher_nfe, seed=0).x.detach().cpu()
            self.teacher_swd = sliced_wasserstein(
                self.teacher.sample(z=self.z_eval, nfe=self.teacher_nfe, seed=0).x.detach().cpu(), self.reference)
        self.reset()

    # ---- the run
    def reset(self) -> None:
        """Back to step 0: the method rebuilt with the same seed (so replaying gives the same run)."""
        self.method = self.cls(self.teacher, self.source, self.overrides, seed=self.seed, device=self.device)
        self.rows: list[dict] = []
        self.tracker = DistanceTracker(self, self.distance_every)
        self.tracker.measure(0)  # the first frame already has its distance
        self.loop = train(self.method, callbacks=[Guard(), self.tracker])
        self.restart()

    def step_once(self) -> bool:
        """One training step; False at the end of the run or when it diverged (``error`` says why)."""
        try:
            state = next(self.loop)
        except StopIteration:
            return False
        except DivergenceError as e:
            self.error = f"{e}; reset with a lower learning rate"
            return False
        self.rows.append({"step": state.it, "stage": state.out.stage, **state.out.row()})
        return True

    @property
    def distance(self) -> pd.DataFrame:
        """Sliced Wasserstein distance to data so far: step, student, teacher, floor."""
        return self.tracker.frame()

    @property
    def losses(self) -> pd.DataFrame:
        """Every completed step's loss terms (``loss/...``) and metrics: step, stage, ..."""
        return pd.DataFrame(self.rows) if self.rows else pd.DataFrame(columns=["step", "stage"])

    # ---- what is drawn
    def student_nfe(self) -> int:
        """The student's smallest native NFE; a generator without one (an ODE flow) runs at the teacher's."""
        nat = tuple(getattr(self.method.generator(), "native_nfe", ()) or ())
        return min(nat) if nat else self.teacher_nfe

    @torch.no_grad()
    def student_samples(self, nfe: int | None = None, z: torch.Tensor | None = None) -> torch.Tensor:
        """The student's samples from the frames' fixed noise (or ``z``)."""
        k = self.student_nfe() if nfe is None else int(nfe)
        return self.method.generator().sample(z=self.z if z is None else z, nfe=k, seed=0).x.detach().cpu()

    def frame(self, field: bool = True, nfe: int | None = None) -> LiveFrame:
        """Everything a view draws: teacher and student samples from the same noise, the method's field (with
        ``field`` and a field function), every step's losses and the distance-to-data history."""
        k = self.student_nfe() if nfe is None else int(nfe)
        x = self.student_samples(k).numpy()
        t = self.teacher_x.numpy()
        samples = pd.DataFrame({"model": ["teacher"] * len(t) + ["student"] * len(x),
                                "x": np.concatenate([t[:, 0], x[:, 0]]), "y": np.concatenate([t[:, 1], x[:, 1]])})
        fld = self.field_fn(self.method) if (field and self.field_fn is not None) else None
        return LiveFrame(self.iteration, self.total, samples, {"teacher": self.teacher_nfe, "student": k}, fld,
                         self.losses, self.distance, self.method_name, self.done, self.error)

    # ---- saving
    def run_config(self, folder: Path) -> dict:
        """config.json of the saved run, as ``lab distill`` writes it (custom data and an on-the-spot teacher are
        saved in the folder and named by their paths there)."""
        folder = Path(folder).resolve()
        custom_data = not self.source.spec.startswith("toy2d:")
        return {"kind": "distill", "method": self.method_name, "config": self.method.config_dict(),
                "teacher": self.teacher_ref if self.teacher_ref else str(folder / "teacher"),
                "data": str(folder / "points.npy") if custom_data else self.source.spec,
                "seed": self.seed, "device": str(self.device), "steps": self.total, "ema": None,
                "built": built_nets(self.method), "live": {"saved_at_step": self.iteration}}

    def metrics(self) -> pd.DataFrame:
        """The losses of every step with the distances merged in at the steps they were measured (step 0: only
        the distance)."""
        d = self.distance.rename(columns={"student": "swd", "teacher": "swd_teacher", "floor": "swd_floor"})
        if not self.rows:
            return d
        return self.losses.merge(d, on="step", how="outer").sort_values("step", ignore_index=True)

    def save(self, folder) -> Path:
        """Write a run folder (config.json, metrics.csv, the student's model.json + weights, a checkpoint that
        ``lab distill --resume`` continues from; custom points and an on-the-spot teacher too). An existing
        folder is refused; every file is written atomically."""
        folder = Path(folder)
        if folder.exists() or folder.is_symlink():
            raise LabError(f"{folder} already exists; choose another name (nothing is overwritten)")
        cfg = self.run_config(folder)
        with Run.create(folder, cfg) as run:
            if cfg["data"] != self.source.spec:  # custom points: kept with the run, so the folder is complete
                pts = self.source.points.cpu().numpy() if isinstance(self.source, PointCloud) else \
                    self.source.sample(100_000, torch.Generator().manual_seed(0)).numpy()
                atomic_write(run.path("points.npy"), lambda tmp: _save_npy(tmp, pts))
            if not self.teacher_ref:
                self.teacher.save(run.path("teacher"), {**getattr(self.teacher, "card", {}), "data": cfg["data"]})
            run.write_metrics(self.metrics().to_dict("records"))
            rec = Recorder(run, every=1)
            rec.rows = [dict(r) for r in self.rows]
            # the checkpoint names this config.json (as `lab distill` does), so a resume finishes the run
            Checkpoint(run, callbacks=[rec], extra={"run_config": json.dumps(run.config, sort_keys=True)}).save(
                self.method)
            recipe = {"method": self.method_name, "teacher": cfg["teacher"], "config": cfg["config"],
                      "seed": self.seed, **built_nets(self.method)}
            self.method.generator().save(run.folder, {"data": cfg["data"], "recipe": recipe,
                                                      "train_seconds": round(self.seconds, 2),
                                                      "run": str(run.folder), "live": True})
        return folder


def _save_npy(path, arr: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, arr, allow_pickle=False)


__all__ = ["LiveSession", "LiveFrame", "DistanceTracker", "methods_2d", "hyperparameters", "check_config",
           "points_from_upload", "points_from_array", "canvas_grid", "points_from_cells", "cells_to_text",
           "cells_from_text", "train_points_teacher", "check_run_name", "MAX_UPLOAD_BYTES", "MIN_POINTS",
           "MAX_POINTS", "QUICK_TEACHER", "LIVE_LIMITS"]
