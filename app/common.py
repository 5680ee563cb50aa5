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
from lab.runs import find_students

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


def methods_table():
    """Every registered method: name, family, mechanism, paper (a DataFrame for the method list)."""
    import pandas as pd

    from lab.methods import get_method, list_methods

    return pd.DataFrame([get_method(m).describe() for m in list_methods()]).set_index("name")


def distributions() -> list[str]:
    """2D distributions that have a teacher in the zoo (shipped or cached)."""
    return zoo.teachers()


def teacher_entry(name: str) -> str:
    return f"toy2d/{name}/teacher"


def zoo_students(name: str) -> list[StudentRef]:
    return [StudentRef(e.rsplit("/", 1)[1], "zoo", e) for e in zoo.students(name)]


def run_students(name: str, root: str | Path | None = None) -> list[StudentRef]:
    """Distilled students in run folders whose data is ``toy2d:name`` and that have a saved model."""
    out = []
    for _, r in find_students(f"toy2d:{name}", root if root is not None else runs_root()).iterrows():
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
