"""Checked exercises for the workshop notebooks.

Each notebook's exercises are declared in ``checks_NN.py`` next to this file, with what the learner should find,
the check in words (the notebook's exercise states the same words after "**Check:**") and a predicate over the
values the learner measured:

    from workshop import exercise

    @exercise("05.2", notebook="05_diffusion_refresher", find="which sampler's paths are straighter",
              check="the student's straightness is below the teacher's")
    def _(student: float, teacher: float) -> bool:
        return student < teacher

In the notebook the learner measures the values and calls ``workshop.check("05.2", student=..., teacher=...)``,
which prints one line, "✓ ..." or "✗ not yet: ...", and returns True or False. The solutions
(``notebooks/solutions/NN_name.py``) end each exercise with the same call; the test suite runs each notebook and
then its solutions in the same kernel and requires every exercise of the notebook to pass (:data:`PASSED`).

Predicates compare numbers measured in the same run (or a threshold the exercise states in words); never a number
copied from an earlier run.
"""
from __future__ import annotations

import importlib
import inspect
import math
import pkgutil
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Exercise:
    id: str            # "NN.k"
    notebook: str      # the notebook's file stem, e.g. "05_diffusion_refresher"
    find: str          # what the learner should find
    check: str         # how it is checked, in words (as in the notebook's "**Check:**")
    predicate: Callable[..., bool]

    @property
    def values(self) -> list[str]:
        """The names of the values the check takes."""
        return list(inspect.signature(self.predicate).parameters)


EXERCISES: dict[str, Exercise] = {}
PASSED: set[str] = set()
#: the values of each exercise's last check in this kernel (numbers as floats; what bench/notebooks.py records)
MEASURED: dict[str, dict] = {}


def exercise(id: str, notebook: str, find: str, check: str):
    """Declare exercise ``id`` ("NN.k") of ``notebook`` with its check; decorates the predicate."""
    if not (isinstance(id, str) and len(id.split(".")) == 2 and all(p.isdigit() for p in id.split("."))):
        raise ValueError(f"exercise id must look like 'NN.k', got {id!r}")

    def register(fn: Callable[..., bool]) -> Callable[..., bool]:
        if id in EXERCISES and EXERCISES[id].predicate.__code__ is not fn.__code__:
            raise ValueError(f"exercise {id} is declared twice")
        EXERCISES[id] = Exercise(id, notebook, find, check, fn)
        return fn

    return register


def _load_all() -> None:
    for mod in pkgutil.iter_modules(__path__):
        if mod.name.startswith("checks_"):
            importlib.import_module(f"{__name__}.{mod.name}")


def _fmt(v) -> str:
    if isinstance(v, float) and math.isfinite(v):
        return f"{v:.4g}"
    return repr(v) if isinstance(v, str) else str(v)


def check(id: str, **values) -> bool:
    """Check exercise ``id`` on the values the learner measured; prints one line and returns True or False."""
    _load_all()
    if id not in EXERCISES:
        raise KeyError(f"no exercise {id!r}; known: {', '.join(sorted(EXERCISES))}")
    ex = EXERCISES[id]
    missing = [v for v in ex.values if v not in values]
    extra = [v for v in values if v not in ex.values]
    if missing or extra:
        raise TypeError(f"exercise {id} checks {', '.join(ex.values)}; got {', '.join(values) or 'nothing'}")
    shown = ", ".join(f"{k} = {_fmt(v)}" for k, v in values.items())
    MEASURED[id] = {k: (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v))
                    for k, v in values.items()}
    try:
        ok = bool(ex.predicate(**values))
    except Exception as e:  # noqa: BLE001 - a value of the wrong kind is "not yet", said plainly
        print(f"✗ not yet ({id}): the check could not use your values ({type(e).__name__}: {e})")
        return False
    if ok:
        PASSED.add(id)
        print(f"✓ {id}: {ex.check} ({shown})")
    else:
        print(f"✗ not yet ({id}): {ex.check}; you measured {shown}")
    return ok


def exercises_of(notebook: str) -> list[Exercise]:
    """The exercises declared for ``notebook`` (its file stem), in id order."""
    _load_all()
    return sorted((e for e in EXERCISES.values() if e.notebook == notebook),
                  key=lambda e: tuple(int(p) for p in e.id.split(".")))


def progress(notebook: str) -> list[str]:
    """Where the learner stands in ``notebook`` (its file stem): one line per exercise, "✓" when it passed in this
    kernel, "·" when not yet, with what to find. Printed and returned."""
    lines = [f"{'✓' if e.id in PASSED else '·'} {e.id}: {e.find}" for e in exercises_of(notebook)]
    print("\n".join(lines) if lines else f"no exercises declared for {notebook!r}")
    return lines


__all__ = ["Exercise", "EXERCISES", "PASSED", "MEASURED", "exercise", "check", "exercises_of", "progress"]
