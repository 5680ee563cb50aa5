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


def kd_methods_table():
    """Every registered knowledge-distillation method: name, family, mechanism, paper, task kinds."""
    import pandas as pd

    from lab.kd import get, list_methods

    return pd.DataFrame([get(m).describe() for m in list_methods()]).set_index("name")


def distributions() -> list[str]:
    """2D distributions that have a teacher in the zoo (shipped or cached)."""
    return zoo.teachers()


def teacher_entry(name: str) -> str:
    return zoo.entry_name("toy2d", name)


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
    """A student from the zoo (``source`` "zoo": an entry name, never trained on the spot) or a run folder,
    by :func:`lab.zoo.resolve` (a run's ``ref`` is always taken as a folder)."""
    return zoo.resolve(ref if source == "zoo" else Path(ref), kind="generator", train_if_missing=False,
                       progress=False).model


def summary_table(panels):
    """The panel summary with the column names the app shows."""
    from lab.probes import panel_summary

    return panel_summary(panels).rename(columns={"swd": "distance to data (SWD)", "swd_floor": "noise floor",
                                                 "seconds": "wall-clock s"})


# ----------------------------------------------------------------------------------------------------------------
# Digits (8x8 images): the class-conditional zoo teacher and whichever of its zoo students exist.

DIGITS_TEACHER = "digits/teacher"
DIGITS_STUDENT_NFE = (1, 2, 4)
DIGITS_BUILD_HINT = "`python bench/digits.py --zoo` (or `lab zoo build`)"
DIGITS_METRICS = ("fd", "kid", "accuracy", "precision", "recall", "diversity")


def digits_entry(name: str) -> str:
    """Zoo entry of a digits model: "teacher" or a method of ``zoo.image_student_methods()``."""
    return zoo.entry_name("images", "digits", name)


def digits_teacher_present() -> bool:
    return zoo.find(DIGITS_TEACHER) is not None


def digits_students() -> list[str]:
    """Methods whose digits student is shipped or cached, in ``zoo.image_student_methods()`` order."""
    return [m for m in zoo.image_student_methods() if zoo.find(digits_entry(m)) is not None]


def digits_missing_students() -> list[str]:
    present = set(digits_students())
    return [m for m in zoo.image_student_methods() if m not in present]


def digits_missing_message(missing: list[str] | None = None) -> str:
    """One paragraph naming the digits students that are not in the zoo and how to build them ("" if none)."""
    missing = digits_missing_students() if missing is None else list(missing)
    if not missing:
        return ""
    return (f"Not in the zoo yet: {', '.join(missing)} (digits students). Build them with {DIGITS_BUILD_HINT}, "
            f"then reload.")


def digits_stamp(name: str) -> float:
    """mtime of the entry's model.json (0 when absent): a cache key, so a rebuilt zoo entry is reloaded."""
    p = zoo.find(digits_entry(name))
    return (p / "model.json").stat().st_mtime if p is not None else 0.0


def load_digits(name: str):
    """The digits teacher or a digits student from the zoo, never trained on the spot."""
    return zoo.load(digits_entry(name), train_if_missing=False, progress=False)


def digits_labels(text: str) -> list[int]:
    """A row of digit labels from text such as "0 1 2 3" or "7,7,7" (one to 32 labels, each 0..9)."""
    from lab.errors import LabError

    parts = [p for p in str(text).replace(",", " ").split() if p]
    # ASCII digits only: str.isdigit() is also true for "²", which int() refuses
    if not parts or len(parts) > 32 or any(not (p.isascii() and p.isdigit()) or int(p) > 9 for p in parts):
        shown = repr(text) if len(repr(text)) <= 80 else repr(text)[:77] + "..."
        raise LabError(f"labels must be 1 to 32 digits 0..9 separated by spaces or commas, got {shown}")
    return [int(p) for p in parts]


def digits_metrics_table(names: list[str]) -> "pd.DataFrame":  # noqa: F821
    """Image metrics from the model cards (``lab.zoo.card``): one row per (model, NFE) with FD-digits, KID,
    class accuracy, precision, recall and within-class diversity, then a "noise floor" row (the train split
    scored as samples against the test split: the value of perfect samples at the cards' sample size).
    Also the training seconds of each model. Models without a card or metrics are left out."""
    import pandas as pd

    rows, floor = [], {}
    for name in names:
        c = zoo.card(digits_entry(name))
        m = c.get("metrics") or {}
        nfes = sorted({int(k.split("@", 1)[1]) for k in m if "@" in k and k.split("@", 1)[1].isdigit()})
        for k in nfes:
            rows.append({"model": name, "nfe": k, **{key: m.get(f"{key}@{k}") for key in DIGITS_METRICS},
                         "train s": c.get("train_seconds")})
        for key in DIGITS_METRICS:
            if f"{key}_noise_floor" in m and key not in floor:
                floor[key] = m[f"{key}_noise_floor"]
    if floor:
        rows.append({"model": "noise floor", "nfe": None, **{key: floor.get(key) for key in DIGITS_METRICS},
                     "train s": None})
    cols = ["model", "nfe", *DIGITS_METRICS, "train s"]
    return pd.DataFrame(rows, columns=cols).astype({"nfe": "Int64"})
