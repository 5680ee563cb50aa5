"""Shared by the two app surfaces (Streamlit explorer, Gradio demo): which 2D models are available.

Only lookups through ``lab`` (zoo, data, runs); no streamlit or gradio here, so both surfaces
and the tests can import it. Nothing is trained: the app opens instantly on what exists.

Run folders are searched under ``$LAB_RUNS`` (default ``runs``, relative to the working
directory, like ``lab runs list``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lab import zoo
from lab.data import toy2d
from lab.runs import list_runs

STUDENT_NFE = (1, 2, 4)
DEFAULT_TEACHER_NFE = zoo.TEACHER_NFE


def runs_root() -> Path:
    return Path(os.environ.get("LAB_RUNS", "runs"))


@dataclass(frozen=True)
class StudentRef:
    """A student the app can load: a zoo entry or a run folder."""

    label: str        # shown in widgets and used as the model name in the panels (kept short: subplot titles)
    source: str       # "zoo" or "run"
    ref: str          # zoo entry name or run folder path


def distributions() -> list[str]:
    """2D distributions that have a teacher in the zoo (shipped or cached)."""
    return [name for name in toy2d.names() if zoo.find(f"toy2d/{name}/teacher") is not None]


def teacher_entry(name: str) -> str:
    return f"toy2d/{name}/teacher"


def zoo_students(name: str) -> list[StudentRef]:
    out = []
    for method in zoo.STUDENT_METHODS:
        entry = f"toy2d/{name}/{method}"
        try:
            present = zoo.find(entry) is not None
        except Exception:  # noqa: BLE001 - an entry the zoo does not know is simply absent
            present = False
        if present:
            out.append(StudentRef(method, "zoo", entry))
    return out


def run_students(name: str, root: str | Path | None = None) -> list[StudentRef]:
    """Distilled students in run folders whose data is ``toy2d:name`` and that have a saved model."""
    df = list_runs(root if root is not None else runs_root())
    if df.empty or "has_model" not in df or "data" not in df:
        return []
    df = df[(df["has_model"] == True) & (df["data"] == f"toy2d:{name}")]  # noqa: E712 - NaN rows are unreadable
    if "kind" in df:
        df = df[df["kind"] != "teacher"]
    out = []
    for _, r in df.iterrows():
        folder = Path(str(r["run"]))
        method = str(r.get("method") or "student")
        label = folder.name if method in folder.name else f"{method}:{folder.name}"
        out.append(StudentRef(label, "run", str(folder)))
    return out


def students(name: str, root: str | Path | None = None) -> list[StudentRef]:
    """Zoo students first, then run folders; labels made unique."""
    refs, seen = [], set()
    for s in zoo_students(name) + run_students(name, root):
        label, i = s.label, 2
        while label in seen or label == "teacher":
            label, i = f"{s.label} #{i}", i + 1
        seen.add(label)
        refs.append(StudentRef(label, s.source, s.ref))
    return refs


def load_teacher(name: str):
    """The zoo teacher, never trained on the spot."""
    return zoo.load(teacher_entry(name), train_if_missing=False, progress=False)


def load_student(source: str, ref: str):
    if source == "zoo":
        return zoo.load(ref, train_if_missing=False, progress=False)
    from lab.diffusion import load_generator

    return load_generator(ref)


def summary_table(panels):
    """The panel summary with the column names the app shows."""
    from lab.probes import panel_summary

    return panel_summary(panels).rename(columns={"swd": "distance to data (SWD)", "swd_floor": "noise floor",
                                                 "seconds": "wall-clock s"})
