"""Shared by the two app surfaces (Streamlit explorer, Gradio demo): which 2D models are available.

Only lookups through ``lab`` (zoo, data, runs); no streamlit or gradio here, so both surfaces
and the tests can import it. Nothing is trained: the app opens instantly on what exists.

Run folders are searched under ``$LAB_RUNS`` (default ``runs``, relative to the working
directory: :func:`lab.runs.runs_root`). The app opens model and run folders only under its zoo and runs
roots: every folder is checked by :func:`lab.runs.confine` (symlinks followed, ``..`` collapsed) before it is read.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lab import zoo
from lab.errors import LabError
from lab.trainable import default_device
from lab.io import read_json
from lab.runs import confine, find_students
from lab.runs import runs_root as lab_runs_root

STUDENT_NFE = (1, 2, 4)
DEFAULT_TEACHER_NFE = zoo.TEACHER_NFE
#: panels per row on the Generators page (by default), and the height of a row in screen pixels: a fixed panel
#: size, however many students
PANELS_PER_ROW = 4
PANEL_HEIGHT = 330


def runs_root() -> Path:
    """The runs root the app reads: ``$LAB_RUNS``, else ``runs`` (:func:`lab.runs.runs_root`)."""
    return lab_runs_root()


def zoo_roots() -> list[Path]:
    """The zoo roots the app reads: the shipped assets and the cache."""
    return [zoo.ASSETS, zoo.cache_dir()]


def run_folder(ref, root: str | Path | None = None) -> Path:
    """A run folder ``ref`` (a path, as listed) resolved and refused (a one-line LabError) when it leaves the
    runs root, through ``..`` or a symlink."""
    return confine(ref, root if root is not None else runs_root())


def zoo_folder(entry: str) -> Path | None:
    """The folder of zoo ``entry`` (None when it is neither shipped nor cached), refused when it leaves the zoo
    roots (a symlinked entry pointing elsewhere)."""
    p = zoo.find(entry)
    return None if p is None else confine(p, *zoo_roots())


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


#: the label prefix of custom 2D data (points drawn or uploaded on the Distill live page, ``lab distill --data x.npy``)
CUSTOM = "custom: "


def custom_datasets(root: str | Path | None = None) -> dict[str, tuple[str, str]]:
    """Custom 2D data of the distilled run folders under the runs root that saved a model: label -> (data spec as
    the runs record it, teacher reference). The data file and a teacher folder must lie under the runs root (a run
    whose data or teacher leaves it is left out); a zoo teacher is kept as its entry name. The label is
    ``custom: <run folder>`` for data kept in its run folder (a live run's points.npy), else ``custom: <file>``."""
    from lab.runs import list_runs

    root = Path(root if root is not None else runs_root())
    out: dict[str, tuple[str, str]] = {}
    df = list_runs(root)
    if df.empty or "data" not in df:
        return out
    for r in df[(df["has_model"] == True) & (df["kind"] == "distill")].itertuples():  # noqa: E712
        data, folder = str(r.data), Path(str(r.run))
        if not data.lower().endswith((".npy", ".csv")):
            continue
        try:
            path = confine(data, root)
            teacher = str(r.teacher)
            if teacher not in zoo.entries():
                confine(teacher, root)
        except LabError:
            continue
        label = CUSTOM + (folder.name if path.parent == folder.resolve() else path.name)
        out.setdefault(label, (data, teacher))
    return out


def is_custom(name: str) -> bool:
    return str(name).startswith(CUSTOM)


def data_source(name: str, root: str | Path | None = None):
    """The data of a zoo distribution or of a custom dataset (:func:`custom_datasets`)."""
    from lab.data import toy2d

    if not is_custom(name):
        return toy2d.get(name)
    sets = custom_datasets(root)
    if name not in sets:
        raise LabError(f"unknown custom data {name!r}; allowed: {', '.join(sets) or '(none under the runs root)'}")
    return toy2d.resolve(sets[name][0])


def data_description(name: str) -> str:
    if is_custom(name):
        return "your own points, saved with a distilled run (the Distill live page, or `lab distill --data`)"
    return data_source(name).description


def teacher_entry(name: str) -> str:
    return zoo.entry_name("toy2d", name)


def zoo_students(name: str) -> list[StudentRef]:
    return [StudentRef(e.rsplit("/", 1)[1], "zoo", e) for e in zoo.students(name)]


def data_run_students(data_spec: str, root: str | Path | None = None) -> list[StudentRef]:
    """Distilled students in run folders under the runs root whose data is ``data_spec`` and that have a saved
    model (a folder reached through a symlink that leaves the root is left out)."""
    root = root if root is not None else runs_root()
    out = []
    for _, r in find_students(data_spec, root).iterrows():
        folder = Path(str(r["run"]))
        try:
            run_folder(folder, root)
        except LabError:
            continue
        method = str(r.get("method") or "student")
        label = folder.name if method in folder.name else f"{method}:{folder.name}"
        out.append(StudentRef(label, "run", str(folder)))
    return out


def run_students(name: str, root: str | Path | None = None) -> list[StudentRef]:
    """Distilled students in run folders whose data is ``toy2d:name`` and that have a saved model."""
    return data_run_students(f"toy2d:{name}", root)


def unique_labels(refs: list[StudentRef]) -> list[StudentRef]:
    """``refs`` with labels made unique (``label #2``, ...; never "teacher")."""
    out, seen = [], set()
    for s in refs:
        label, i = s.label, 2
        while label in seen or label == "teacher":
            label, i = f"{s.label} #{i}", i + 1
        seen.add(label)
        out.append(StudentRef(label, s.source, s.ref))
    return out


def students(name: str, root: str | Path | None = None) -> list[StudentRef]:
    """Zoo students first, then run folders; labels made unique. A custom dataset's are its run folders."""
    if is_custom(name):
        spec = custom_datasets(root).get(name)
        return unique_labels(data_run_students(spec[0], root)) if spec else []
    return unique_labels(zoo_students(name) + run_students(name, root))


def load_teacher(name: str, root: str | Path | None = None):
    """The zoo teacher, never trained on the spot (an entry that leaves the zoo roots through a symlink is
    refused); for custom data, the teacher its run names (a folder under the runs root, or a zoo entry)."""
    if is_custom(name):
        spec = custom_datasets(root).get(name)
        if spec is None:
            raise LabError(f"unknown custom data {name!r}; allowed: {', '.join(custom_datasets(root)) or '(none)'}")
        if spec[1] not in zoo.entries():
            return load_student("run", spec[1], root)
        name = spec[1].split("/")[1]
    zoo_folder(teacher_entry(name))
    return zoo.load(teacher_entry(name), default_device(), train_if_missing=False, progress=False)


def load_student(source: str, ref: str, root: str | Path | None = None):
    """A student from the zoo (``source`` "zoo": an entry name, never trained on the spot) or a run folder under
    the runs root (``root``, default :func:`runs_root`), by :func:`lab.zoo.resolve` (a run's ``ref`` is always
    taken as a folder). A folder outside its root is refused (a one-line LabError)."""
    if source == "zoo":
        if zoo_folder(ref) is None:
            raise LabError(f"zoo entry {ref!r} is not built yet: neither shipped nor cached; run "
                           f"`lab zoo build --entry {ref}`")
        return zoo.resolve(ref, default_device(), kind="generator", train_if_missing=False, progress=False).model
    if source != "run":
        raise LabError(f"unknown student source {source!r}; allowed: zoo, run")
    return zoo.resolve(run_folder(ref, root), default_device(), kind="generator", train_if_missing=False,
                       progress=False).model


def stamp(ref: StudentRef) -> float:
    """mtime of the student's model.json (0 when absent): a cache key, so a rewritten model is reloaded."""
    p = (zoo.find(ref.ref) if ref.source == "zoo" else Path(ref.ref))
    return (p / "model.json").stat().st_mtime if p is not None and (p / "model.json").exists() else 0.0


def panel_rows(panels, per_row: int = PANELS_PER_ROW) -> list:
    """Layout: the panels of ``lab.probes.sample_panels`` in rows of at most ``per_row`` (model, NFE) panels, in
    order (a list of DataFrames), so that any number of students keeps a fixed panel size."""
    key = list(zip(panels.model, panels.nfe))
    order = list(dict.fromkeys(key))
    rows = [set(order[i:i + per_row]) for i in range(0, len(order), per_row)]
    return [panels[[k in row for k in key]] for row in rows]


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


def digits_student_refs(root: str | Path | None = None) -> list[StudentRef]:
    """The digits students the app can show: the zoo's (labelled by method), then run folders whose data is
    digits and that saved a model; labels made unique."""
    zoo_refs = [StudentRef(m, "zoo", digits_entry(m)) for m in digits_students()]
    return unique_labels(zoo_refs + data_run_students("digits", root))


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
    """The digits teacher or a digits student from the zoo, never trained on the spot (an entry that leaves the
    zoo roots through a symlink is refused)."""
    zoo_folder(digits_entry(name))
    return zoo.load(digits_entry(name), default_device(), train_if_missing=False, progress=False)


def digits_pixel(n_labels: int) -> int:
    """Layout: screen pixels per image pixel for a grid of ``n_labels`` columns of 8x8 digits (about 900 px
    wide, 4 to 10 px per pixel: never 8 pixels drawn as 8 screen pixels)."""
    return max(4, min(10, 900 // (9 * max(1, int(n_labels)))))


def digits_labels(text: str) -> list[int]:
    """A row of digit labels from text such as "0 1 2 3" or "7,7,7" (one to 32 labels, each 0..9)."""
    parts = [p for p in str(text).replace(",", " ").split() if p]
    # ASCII digits only: str.isdigit() is also true for "²", which int() refuses
    if not parts or len(parts) > 32 or any(not (p.isascii() and p.isdigit()) or int(p) > 9 for p in parts):
        shown = repr(text) if len(repr(text)) <= 80 else repr(text)[:77] + "..."
        raise LabError(f"labels must be 1 to 32 digits 0..9 separated by spaces or commas, got {shown}")
    return [int(p) for p in parts]


def model_card(ref: StudentRef) -> dict:
    """The model card of a zoo entry or of a run folder's model (``{}`` when there is none)."""
    if ref.source == "zoo":
        return zoo.card(ref.ref)
    p = run_folder(ref.ref) / "model.json"
    spec = read_json(p) if p.is_file() else {}
    return (spec.get("card") or {}) if isinstance(spec, dict) else {}


def digits_metrics_table(names: list) -> "pd.DataFrame":  # noqa: F821
    """Image metrics from the model cards (``lab.zoo.card``, or a run folder's model.json): one row per
    (model, NFE) with FD-digits, KID, class accuracy, precision, recall and within-class diversity, then a
    "noise floor" row (the train split scored as samples against the test split: the value of perfect samples
    at the cards' sample size). Also the training seconds of each model. ``names`` are zoo names ("teacher",
    a method) or StudentRefs. Models without a card or metrics are left out (a run with a card but no metrics
    gives one row with its training seconds)."""
    import pandas as pd

    rows, floor = [], {}
    for item in names:
        ref = item if isinstance(item, StudentRef) else StudentRef(item, "zoo", digits_entry(item))
        name, c = ref.label, model_card(ref)
        m = c.get("metrics") or {}
        nfes = sorted({int(k.split("@", 1)[1]) for k in m if "@" in k and k.split("@", 1)[1].isdigit()})
        for k in nfes:
            rows.append({"model": name, "nfe": k, **{key: m.get(f"{key}@{k}") for key in DIGITS_METRICS},
                         "train s": c.get("train_seconds")})
        if not nfes and ref.source == "run" and c:
            rows.append({"model": name, "nfe": None, **{key: None for key in DIGITS_METRICS},
                         "train s": c.get("train_seconds")})
        for key in DIGITS_METRICS:
            if f"{key}_noise_floor" in m and key not in floor:
                floor[key] = m[f"{key}_noise_floor"]
    if floor:
        rows.append({"model": "noise floor", "nfe": None, **{key: floor.get(key) for key in DIGITS_METRICS},
                     "train s": None})
    cols = ["model", "nfe", *DIGITS_METRICS, "train s"]
    return pd.DataFrame(rows, columns=cols).astype({"nfe": "Int64"})


def loadable(chosen, by_label: dict, load) -> tuple[tuple, list[str]]:
    """The chosen students that load (``load(ref)`` raises a LabError for a damaged or refused folder), as
    ``(label, source, ref)`` tuples, and one "**label** (reason)" line per student left out."""
    refs, broken = [], []
    for c in chosen:
        r = by_label[c]
        try:
            load(r)
            refs.append((r.label, r.source, r.ref))
        except LabError as e:
            broken.append(f"**{c}** ({e})")
    return tuple(refs), broken
