"""The demo probe: a teacher and a distilled student sampled from the same noise, each timed warm.

- ``demo_models``: every model the demo offers (zoo students on 2D data and digits, distilled run folders
  under a runs root), each with the zoo teacher it is compared against.
- ``model_options``: what a (teacher, student) pair takes: the student's trained NFEs, its classes, whether
  it is guided (takes a guidance weight w).
- ``timed_sample``: one untimed call first (warm-up), then the median wall-clock time of ``repeats`` calls.
- ``side_by_side``: teacher at ``teacher_nfe`` and student at ``student_nfe`` from the same noise, timed warm;
  a student runs only at an NFE it was trained for unless ``off_grid`` (and then the result says so).
- ``to_json`` / ``points_frame`` / ``image_rows``: the result as a JSON-able dict (what the Gradio API returns)
  and back into what ``lab.viz`` draws.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lab import zoo
from lab.data import toy2d
from lab.diffusion.generators import Generator, make_noise
from lab.errors import LabError
from lab.io import read_json
from lab.methods.trajectory.guidance import CFGGenerator, is_class_conditional
from lab.metrics import noise_floor, sliced_wasserstein
from lab.probes import timed_sample
from lab.probes.images import n_classes_of
from lab.runs import confine, list_runs

#: generator kinds that take a guidance weight w as an input
GUIDED_KINDS = ("guided_flow",)
#: the guidance weights offered when the recipe does not say (the zoo's guidance students train on 0..4)
DEFAULT_W_RANGE = (0.0, 4.0)


@dataclass(frozen=True)
class DemoModel:
    """A student the demo can show, and the zoo teacher it is compared against."""

    label: str     #: unique, shown in the picker: the zoo entry name, or "run:<folder under the runs root>"
    data: str      #: "toy2d:NAME" or "digits"
    source: str    #: "zoo" or "run"
    ref: str       #: zoo entry name or run folder
    teacher: str   #: zoo teacher entry (``toy2d/NAME/teacher``, ``toy2d/NAME/analytic`` or ``digits/teacher``)
    w_range: tuple = DEFAULT_W_RANGE  #: guidance weights the recipe trained on (used by guided students only)

    def folder(self) -> Path | None:
        """The folder holding the student's model.json (None when a zoo entry is missing)."""
        return zoo.find(self.ref) if self.source == "zoo" else Path(self.ref)

    def stamp(self) -> float:
        """The model.json's mtime: a cache key, so a rebuilt entry or re-saved run reloads."""
        p = self.folder()
        return (p / "model.json").stat().st_mtime if p is not None and (p / "model.json").exists() else 0.0

    def load(self, device="cpu") -> tuple[Generator, Generator]:
        """(teacher, student), never trained on the spot."""
        teacher = zoo.load(self.teacher, device, train_if_missing=False, progress=False)
        ref = self.ref if self.source == "zoo" else Path(self.ref)
        student = zoo.resolve(ref, device, kind="generator", train_if_missing=False, progress=False).model
        return teacher.eval(), student.eval()


def _teacher_for(data: str, wanted: str | None) -> str | None:
    """The zoo teacher of ``data``: ``wanted`` when it is a zoo teacher entry of that data, else the data's own."""
    if data == "digits":
        own = zoo.entry_name("images", "digits", "teacher")
        return own if zoo.find(own) is not None else None
    name = data.split(":", 1)[1] if data.startswith("toy2d:") else None
    if name is None or name not in zoo.teachers():
        return None
    if wanted in (zoo.entry_name("toy2d", name), zoo.entry_name("toy2d", name, "analytic")) and wanted in zoo.entries():
        return wanted
    return zoo.entry_name("toy2d", name)


def _w_range(recipe_config: dict) -> tuple:
    lo, hi = recipe_config.get("w_min"), recipe_config.get("w_max")
    ok = all(isinstance(v, (int, float)) and math.isfinite(v) for v in (lo, hi)) and lo <= hi
    return (float(lo), float(hi)) if ok else DEFAULT_W_RANGE


def demo_models(runs_root=None) -> list[DemoModel]:
    """Zoo students (2D distributions, then digits) that are shipped or cached, then the distilled run folders
    under ``runs_root`` (with a saved model, on 2D or digits data whose zoo teacher exists)."""
    out = []
    zoo_entries = [e for name in zoo.teachers() for e in zoo.students(name)]
    if _teacher_for("digits", None):
        zoo_entries += [e for e in (zoo.entry_name("images", "digits", m) for m in zoo.image_student_methods())
                        if zoo.find(e) is not None]
    for e in zoo_entries:
        card = zoo.card(e)
        recipe = card.get("recipe", {}) if isinstance(card.get("recipe"), dict) else {}
        data = card.get("data") or ("digits" if e.startswith("digits/") else "toy2d:" + e.split("/")[1])
        out.append(DemoModel(e, data, "zoo", e, _teacher_for(data, recipe.get("teacher")),
                             _w_range(recipe.get("config") or {})))
    runs = list_runs(runs_root) if runs_root is not None else pd.DataFrame()
    if not runs.empty and {"kind", "has_model", "data"} <= set(runs.columns):
        root = Path(runs_root)
        for r in runs[(runs["kind"] == "distill") & (runs["has_model"] == True)].itertuples():  # noqa: E712
            teacher = _teacher_for(str(r.data), str(getattr(r, "teacher", "")))
            if teacher is None:
                continue
            try:  # a run reached through a symlink that leaves the runs root is not offered
                folder = confine(str(r.run), root)
            except LabError:
                continue
            rel = folder.relative_to(root.resolve()).as_posix()
            try:
                cfg = read_json(folder / "config.json").get("config") or {}
            except (LabError, OSError, AttributeError):
                cfg = {}
            out.append(DemoModel(f"run:{rel}", str(r.data), "run", str(folder), teacher, _w_range(cfg)))
    return out


def n_classes_taken(gen: Generator) -> int:
    """How many class labels ``gen`` takes (0: unconditional): its networks' ``n_classes``, or the components of
    an analytic Gaussian-mixture teacher."""
    k = n_classes_of(gen)
    d = getattr(gen, "denoiser", None)
    if not k and d is not None and is_class_conditional(d):
        k = int(d.net.means.shape[0])
    return k


def model_options(teacher: Generator, student: Generator) -> dict:
    """What a (teacher, student) pair takes: ``native_nfe`` (the NFEs the student was trained for; () means any),
    ``classes`` (labels 0..classes-1 that both take; 0: none), ``guided`` (the student takes a guidance weight w),
    ``w`` (its default weight), ``teacher_guided`` (the teacher is then sampled with classifier-free guidance at
    the same w: two network passes per step, so an even NFE) and ``kind``."""
    k = n_classes_taken(student)
    guided = getattr(student, "kind", "") in GUIDED_KINDS
    teacher_guided = guided and n_classes_taken(teacher) > 0 and getattr(teacher, "denoiser", None) is not None
    return {"native_nfe": tuple(int(v) for v in (getattr(student, "native_nfe", ()) or ())),
            "classes": k if k and n_classes_taken(teacher) == k else 0, "guided": guided,
            "w": float(getattr(student, "w", 0.0)) if guided else None, "teacher_guided": teacher_guided,
            "kind": str(getattr(student, "kind", ""))}


def _check_int(name: str, v, lo: int, hi: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo or (hi is not None and v > hi):
        raise LabError(f"{name} must be an integer in {lo}..{hi if hi is not None else 'inf'}, got {v!r}")
    return int(v)


@torch.no_grad()
def side_by_side(teacher: Generator, student: Generator, teacher_nfe: int = 50, student_nfe: int | None = None,
                 n: int = 1000, seed: int = 0, label: int | None = None, w: float | None = None, repeats: int = 5,
                 off_grid: bool = False, data=None, budget: float | None = None) -> dict:
    """The teacher and the student from the same noise ``make_noise(n, teacher.shape, seed)``, each timed warm
    (:func:`timed_sample`, with ``repeats`` and ``budget``).

    ``student_nfe`` (default: the smallest it was trained for) must be one of the student's ``native_nfe``
    unless ``off_grid``; a generator that does not run at the NFE asked for (e.g. a one-step sampler) is a
    LabError. A class-conditional pair gets the labels ``label`` (or 0, 1, ... cycling when None); a guided
    student gets the guidance weight ``w`` (default its own), and the teacher is then sampled with
    classifier-free guidance at the same w (two passes per step: its NFE must be even). ``data`` (a 2D
    source, or a ``toy2d`` name) adds the sliced Wasserstein distance of each model's samples to fresh data and
    the noise floor (over all classes only).

    Returns {"seed", "n", "label", "labels" (n,) or None, "w", "repeats", "noise" (n, *shape),
    "models": [{"model": "teacher"|"student", "nfe", "native_nfe", "off_grid", "samples" (n, *shape) float32,
    "seconds" (median), "times" (each timed call), "swd", "swd_floor"}]}.
    """
    opts = model_options(teacher, student)
    n, seed = _check_int("n", n, 1), _check_int("seed", seed, 0, 2**63 - 1)
    teacher_nfe = _check_int("teacher_nfe", teacher_nfe, 1)
    native = opts["native_nfe"]
    student_nfe = _check_int("student_nfe", min(native) if student_nfe is None and native else
                             (1 if student_nfe is None else student_nfe), 1)
    if native and student_nfe not in native and not off_grid:
        raise LabError(f"student_nfe {student_nfe} is not an NFE this student was trained for; allowed: "
                       f"{', '.join(map(str, native))} (or ask for off_grid)")
    shape = tuple(teacher.shape)
    if tuple(student.shape) != shape:
        raise LabError(f"the student makes samples of shape {tuple(student.shape)}, the teacher {shape}")
    k = opts["classes"]
    if label is not None:
        if not k:
            raise LabError("this model takes no class label; give none")
        _check_int("label", label, 0, k - 1)
    y = None if not k else torch.full((n,), int(label), dtype=torch.long) if label is not None else torch.arange(n) % k
    cond, t_gen = {}, teacher
    if w is not None and not opts["guided"]:
        raise LabError(f"this student (kind {opts['kind']!r}) takes no guidance weight; allowed for kinds "
                       f"{', '.join(GUIDED_KINDS)}")
    if opts["guided"]:
        w = opts["w"] if w is None else w
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w):
            raise LabError(f"w must be a finite number, got {w!r}")
        cond = {"w": float(w)}
        if opts["teacher_guided"]:
            if teacher_nfe % 2:
                raise LabError(f"with guidance the teacher pays 2 network passes per step: teacher_nfe must be even "
                               f"(2, 4, ..., 50, ...), got {teacher_nfe}")
            t_gen = CFGGenerator(teacher.denoiser, float(w))
    src = toy2d.get(data) if isinstance(data, str) else data
    ref = floor = None
    if src is not None and label is None:
        ref = src.sample(n, torch.Generator().manual_seed(seed + 777))
        floor = float(noise_floor(src, n))
    z = make_noise(n, shape, seed)
    models = []
    for name, gen, nfe, c in (("teacher", t_gen, teacher_nfe, {}), ("student", student, student_nfe, cond)):
        res, med, times = timed_sample(gen, z, nfe, seed, y, repeats, budget, **c)
        if int(res.nfe) != nfe:
            raise LabError(f"the {name} cannot run at {nfe} NFE (it ran {int(res.nfe)}); allowed: "
                           f"{', '.join(map(str, native)) if name == 'student' and native else 'any'}")
        x = res.x.float()
        models.append({"model": name, "nfe": nfe, "native_nfe": native if name == "student" else (),
                       "off_grid": bool(name == "student" and native and nfe not in native),
                       "samples": x.numpy().astype(np.float32), "seconds": float(med),
                       "times": [float(t) for t in times],
                       "swd": float(sliced_wasserstein(x, ref)) if ref is not None else math.nan,
                       "swd_floor": floor if floor is not None else math.nan})
    return {"seed": seed, "n": n, "label": None if label is None else int(label),
            "labels": None if y is None else y.numpy(), "w": cond.get("w"), "repeats": int(repeats),
            "noise": z.numpy(), "models": models}


def to_json(result: dict, model: str, data: str, teacher: str = "teacher") -> dict:
    """``side_by_side``'s result as a JSON-able dict (floats, ints, nested lists; NaN as None): model, data,
    teacher, seed, n, label, labels, w, repeats and one entry per model in "samples" with model, nfe, native_nfe,
    off_grid, seconds, times, swd, swd_floor and "points" (n, 2) or "images" (n, C, H, W) in the data range
    [-1, 1]."""
    def num(v):
        return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v

    out = {"model": model, "data": data, "teacher": teacher, "seed": result["seed"], "n": result["n"],
           "label": result["label"],
           "labels": None if result["labels"] is None else [int(v) for v in result["labels"]], "w": result["w"],
           "repeats": result["repeats"], "samples": []}
    for m in result["models"]:
        x = np.asarray(m["samples"])
        key = "points" if x.ndim == 2 else "images"
        out["samples"].append({"model": m["model"], "nfe": int(m["nfe"]), "native_nfe": list(m["native_nfe"]),
                               "off_grid": bool(m["off_grid"]), "seconds": m["seconds"], "times": list(m["times"]),
                               "swd": num(m["swd"]), "swd_floor": num(m["swd_floor"]), key: x.tolist()})
    return out


def points_frame(js: dict) -> pd.DataFrame:
    """The 2D samples of a ``to_json`` dict as the frame ``lab.viz.sample_panels_figure`` draws: one row per
    point with model (the student named by the model's label), nfe, x, y, swd, swd_floor, seconds."""
    frames = []
    for s in js["samples"]:
        p = np.asarray(s["points"], dtype=np.float32).reshape(-1, 2)
        name = "teacher" if s["model"] == "teacher" else js["model"]
        frames.append(pd.DataFrame({"model": name, "nfe": s["nfe"], "x": p[:, 0], "y": p[:, 1],
                                    "swd": math.nan if s["swd"] is None else s["swd"],
                                    "swd_floor": math.nan if s["swd_floor"] is None else s["swd_floor"],
                                    "seconds": s["seconds"]}))
    return pd.concat(frames, ignore_index=True)


def image_rows(js: dict) -> np.ndarray:
    """The images of a ``to_json`` dict as (models, n, C, H, W), the rows ``lab.viz.images.image_grid_figure``
    draws (teacher first)."""
    return np.stack([np.asarray(s["images"], dtype=np.float32) for s in js["samples"]])


__all__ = ["DemoModel", "demo_models", "n_classes_taken", "model_options", "timed_sample", "side_by_side", "to_json",
           "points_frame", "image_rows", "GUIDED_KINDS", "DEFAULT_W_RANGE"]
