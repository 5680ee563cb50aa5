"""bench/RESULTS.md is built from sections; each benchmark script rewrites only its own, in place.

Every section sits between two marker comments naming its key and the script that writes it::

    <!-- results:digits:start (written by bench/digits.py: edit the script, not this section) -->
    ## Digits (8x8, class-conditional UNet teacher)
    ...
    <!-- results:digits:end -->

:func:`replace_section` rewrites what is between one section's markers and leaves every other byte of the
file as it was. A section that is not in the file yet goes before the first section listed after it in
:data:`SECTIONS` that is there (so the file keeps that order), else at the end. A file written before the
markers existed (an unmarked section starting at its heading) is converted section by section: the unmarked
section is replaced by the marked one, up to the next known section's heading or marker.
"""
from __future__ import annotations

import re
from pathlib import Path

RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"
TITLE = "# Benchmark results"
PREAMBLE = (f"{TITLE}\n\nEach section below is written by its own script (named in the section), between marker "
            "comments: a script rewrites only its own section (`bench/results_md.py`). The rows behind every table "
            "are committed in `bench/results/`; each script's `--write` rebuilds its section from them.\n\n")

#: every section in the order RESULTS.md holds them: key -> (the script that writes it, the heading(s) an unmarked
#: copy of the section starts with, in files written before the markers)
SECTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "2d": ("bench/run.py", (TITLE, "## 2D points")),
    "digits": ("bench/digits.py", ("## Digits (8x8, class-conditional UNet teacher)",)),
    "kd": ("bench/kd.py", ("## Knowledge distillation (classifiers and a tiny language model)",)),
    "diswot": ("bench/diswot_rank.py", ("## DisWOT",)),
    "app-speed": ("bench/app_speed.py", ("## Explorer speed (time to first figure)",)),
    "load-test": ("bench/load_test.py", ("## Load test",)),
    "notebooks": ("bench/notebooks.py", ("## Notebooks (workshop mode)",)),
    "live": ("bench/live.py", ("## Live distillation",)),
    "suite": ("bench/suite_time.py", ("## Test suite",)),
    "particles": ("bench/particles.py", ("## Score distillation on particles",)),
    "lm": ("bench/lm.py", ("## Language models: gkd, teacher hacking, osd",)),
    "dd": ("bench/dd.py", ("## Dataset distillation (8x8 digits)",)),
    "scaling": ("bench/scaling.py", ("## How the cost grows (issue 18: speed-ups, overheads, scaling)",)),
}


def start_marker(key: str) -> str:
    return f"<!-- results:{key}:start (written by {SECTIONS[key][0]}: edit the script, not this section) -->"


def end_marker(key: str) -> str:
    return f"<!-- results:{key}:end -->"


def _check_key(key: str) -> None:
    if key not in SECTIONS:
        raise ValueError(f"unknown RESULTS.md section {key!r}; allowed: {', '.join(SECTIONS)}")


def _marked_span(text: str, key: str) -> tuple[int, int] | None:
    """(start, end) of the section's marked block (markers included), None if it has no markers."""
    s, e = start_marker(key), end_marker(key)
    ns, ne = text.count(s), text.count(e)
    if ns == ne == 0:
        return None
    if ns != 1 or ne != 1 or text.index(s) > text.index(e):
        raise ValueError(f"RESULTS.md must hold the section {key!r}'s markers once each, start before end "
                         f"(found {ns} start and {ne} end markers)")
    return text.index(s), text.index(e) + len(e)


def _heading_at(text: str, heading: str, skip: list[tuple[int, int]]) -> int | None:
    """The offset of ``heading`` as a whole line outside the ``skip`` spans (marked sections), or None."""
    for m in re.finditer(rf"(?m)^{re.escape(heading)}[^\n]*$", text):
        if not any(a <= m.start() < b for a, b in skip):
            return m.start()
    return None


def sections(text: str) -> dict[str, str]:
    """The marked sections of ``text`` (RESULTS.md's contents): key -> the block, markers included."""
    out = {}
    for key in SECTIONS:
        span = _marked_span(text, key)
        if span:
            out[key] = text[span[0]:span[1]]
    return out


def with_section(old: str, key: str, text: str) -> str:
    """``old`` (RESULTS.md's contents) with section ``key`` set to ``text`` (which starts with its heading)."""
    _check_key(key)
    body = text.strip("\n")
    if not body.startswith("#"):
        raise ValueError(f"section {key!r} must start with its heading (a line starting with '#'), got {body[:40]!r}")
    block = f"{start_marker(key)}\n{body}\n\n{end_marker(key)}"  # the blank line ends a table before the marker
    span = _marked_span(old, key)
    if span is not None:
        return old[:span[0]] + block + old[span[1]:]
    marked = [sp for k in SECTIONS if (sp := _marked_span(old, k))]
    legacy = [p for h in SECTIONS[key][1] if (p := _heading_at(old, h, marked)) is not None]
    if legacy:  # an unmarked copy from before the markers: replace it up to the next known section
        a = min(legacy)
        bounds = [sp[0] for sp in marked if sp[0] > a]
        bounds += [p for k in SECTIONS if k != key for h in SECTIONS[k][1]
                   if (p := _heading_at(old, h, marked)) is not None and p > a]
        b = min(bounds, default=len(old))
        new = old[:a] + block + ("\n\n" + old[b:] if b < len(old) else "\n")
    else:
        later = list(SECTIONS)[list(SECTIONS).index(key) + 1:]
        pos = [sp[0] for k in later if (sp := _marked_span(old, k))]
        pos += [p for k in later for h in SECTIONS[k][1] if (p := _heading_at(old, h, marked)) is not None]
        if pos:
            b = min(pos)
            new = old[:b] + block + "\n\n" + old[b:]
        else:
            new = (old.rstrip("\n") + "\n\n" if old.strip() else "") + block + "\n"
    if not new.startswith(TITLE + "\n"):
        new = PREAMBLE + new.lstrip("\n")
    return new


def write_from_json(key: str, render, results: Path | str, path: Path | str | None = None) -> str:
    """Section ``key`` rendered by ``render(dict)`` from the JSON file ``results`` and written into ``path``
    (RESULTS.md by default) by :func:`replace_section`; returns the text. A script's ``write`` in one line."""
    import json

    text = render(json.loads(Path(results).read_text()))
    replace_section(key, text, RESULTS_MD if path is None else path)
    return text


def replace_section(key: str, text: str, path: Path | str = RESULTS_MD) -> None:
    """Write section ``key`` of ``path`` (RESULTS.md by default) as ``text``, every other byte unchanged."""
    from lab.io import atomic_write_text

    path = Path(path)
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    new = with_section(old, key, text)
    if new != old:
        atomic_write_text(path, new)


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo ("unknown CPU" where there is none): the machine line of every section."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"
