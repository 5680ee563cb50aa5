"""The README's generated parts: the method tables (from the registries) and the figures from ``bench/results/``.

Each generated part sits between a pair of marker comments in README.md (or RELIABILITY.md); everything between
them is rewritten, nothing else is touched. Two kinds:

- tables generated from the registries (``lab.methods.REGISTRY``, ``lab.kd.KD_REGISTRY``): edit a method's
  ``family`` / ``mechanism`` / ``paper`` on its class;
- figures generated from the benchmark results committed in ``bench/results/`` (the 2D summary, the digits table,
  the KD all-labels comparison, DisWOT's ranking, the test suite's time): re-run the benchmark script named in
  the marker, which rewrites its JSON, then this script. Inline figures sit inside a sentence; the text around the
  markers is the README's own.

    python bench/readme_tables.py           # rewrite the generated parts of README.md and RELIABILITY.md
    python bench/readme_tables.py --check   # exit 1 with one line per file if a part is out of date; write nothing
    python bench/readme_tables.py --readme COPY.md   # only that file (likewise --reliability)

``tests/test_readme_tables.py`` runs the check.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
README = ROOT / "README.md"
RELIABILITY = ROOT / "RELIABILITY.md"
SCRIPT = "bench/readme_tables.py"


@dataclass(frozen=True)
class Table:
    """One generated table: its marker id, header and one row (a tuple of cells) per registered class."""

    key: str
    registry: str
    header: tuple[str, ...]
    row: Callable[[dict], tuple[str, ...]]
    load: Callable[[], Mapping[str, type]]
    doc: str = "README.md"
    inline: bool = False

    @property
    def start(self) -> str:
        return f"<!-- {self.key}:start (generated from {self.registry} by {SCRIPT}: edit the registry, not this table) -->"

    @property
    def end(self) -> str:
        return f"<!-- {self.key}:end -->"


@dataclass(frozen=True)
class Figure:
    """A part generated from committed benchmark results: a block (a table) or inline (part of one line)."""

    key: str
    source: str  # the results it reads and the script that writes them
    make: Callable[[], str]
    doc: str = "README.md"
    inline: bool = False

    @property
    def start(self) -> str:
        return f"<!-- {self.key}:start (generated from {self.source} by {SCRIPT}) -->"

    @property
    def end(self) -> str:
        return f"<!-- {self.key}:end -->"


def _step_registry() -> Mapping[str, type]:
    from lab.methods import REGISTRY

    return REGISTRY


def _kd_registry() -> Mapping[str, type]:
    from lab.kd import KD_REGISTRY

    return KD_REGISTRY


def _dd_registry() -> Mapping[str, type]:
    from lab.dd import DD_REGISTRY

    return DD_REGISTRY


def bench(name: str):
    """The benchmark script ``bench/<name>.py`` as a module (loaded by path under ``bench_<name>``: bench/ is not put
    on sys.path, so its module names cannot shadow anything)."""
    mod = sys.modules.get(f"bench_{name}")
    if mod is None:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
    return mod


def _suite(style: str) -> str:
    import json

    st = bench("suite_time")
    if not st.RESULTS.exists():
        raise LookupError(f"no {st.RESULTS}; run: python bench/suite_time.py (it runs make test's "
                          f"pytest command), or --log a finished make test's output")
    r = json.loads(st.RESULTS.read_text())
    bad = ", ".join(f"{r[k]} {k}" for k in ("failed", "errors") if r.get(k))
    tests = f"{r['passed']:,} tests" + (f" ({bad})" if bad else "")
    wall = st.minutes(r["wall_s"])
    if style == "readme":
        return (f"{tests} in {st.minutes(r['pytest_s'])} of pytest, "
                + (f"{wall} with the install from a clean clone" if r.get("with_install") else f"{wall} in all"))
    return (f"{r['passed']:,} passed" + (f" ({bad})" if bad else "") + f" in {st.minutes(r['pytest_s'])} of pytest ("
            + (f"{wall} with the install)" if r.get("with_install") else f"{wall} in all)"))


TABLES = (
    Table("methods-table", "lab.methods.REGISTRY", ("name", "family", "mechanism", "paper"),
          lambda d: (f"`{d['name']}`", d["family"], d["mechanism"], d["paper"]), _step_registry),
    Table("kd-methods-table", "lab.kd.KD_REGISTRY", ("name", "tasks", "mechanism", "paper"),
          lambda d: (f"`{d['name']}`", ", ".join(d["kinds"]), d["mechanism"], d["paper"]), _kd_registry),
    Table("dd-methods-table", "lab.dd.DD_REGISTRY", ("name", "mechanism", "paper"),
          lambda d: (f"`{d['name']}`", d["mechanism"], d["paper"]), _dd_registry),
)

FIGURES = (
    Figure("suite-time", "bench/results/suite.json, bench/suite_time.py", lambda: _suite("readme"), inline=True),
    Figure("bench-2d-summary", "bench/results/*__*.json, bench/run.py", lambda: bench("run").readme_summary()),
    Figure("bench-digits-teacher", "bench/results/digits/teacher.json, bench/digits.py",
           lambda: bench("digits").readme_teacher(), inline=True),
    Figure("bench-digits-summary", "bench/results/digits/*.json, bench/digits.py",
           lambda: bench("digits").readme_table()),
    Figure("kd-all-labels", "bench/results/kd_settings/all_labels.json, bench/kd.py --setting all_labels",
           lambda: bench("kd").readme_setting("all_labels"), inline=True),
    Figure("diswot-tau", "bench/results/diswot.json, bench/diswot_rank.py",
           lambda: bench("diswot_rank").readme_sentence(), inline=True),
    Figure("bench-dd-summary", "bench/results/dd.json, bench/dd.py", lambda: bench("dd").readme_table()),
    Figure("bench-lm-summary", "bench/results/lm.json, bench/lm.py", lambda: bench("lm").readme_table()),
    Figure("suite-time-reliability", "bench/results/suite.json, bench/suite_time.py", lambda: _suite("reliability"),
           doc="RELIABILITY.md", inline=True),
)

GENERATED = TABLES + FIGURES


def cell(text: str) -> str:
    """One markdown table cell: ``|`` escaped; a line break would end the row, so it is refused."""
    text = str(text).strip()
    if "\n" in text or "\r" in text:
        raise ValueError(f"a table cell must be one line: {text!r}")
    return text.replace("|", r"\|")


def render(part: Table | Figure, registry: Mapping[str, type] | None = None) -> str:
    """The part's markdown, without the markers: a table's header, rule and one row per method sorted by name; a
    figure's text from the results (LookupError when they are missing)."""
    if isinstance(part, Figure):
        text = part.make().strip("\n")
        if part.inline and ("\n" in text or "\r" in text):
            raise ValueError(f"the inline figure {part.key} must be one line: {text!r}")
        return text
    registry = part.load() if registry is None else registry
    lines = ["| " + " | ".join(part.header) + " |", "|" + "---|" * len(part.header)]
    for name in sorted(registry):
        lines.append("| " + " | ".join(cell(c) for c in part.row(registry[name].describe())) + " |")
    return "\n".join(lines)


def _span(text: str, part: Table | Figure) -> tuple[int, int]:
    """(start, end) of the text between the part's markers; a missing or repeated marker is an error."""
    for marker in (part.start, part.end):
        if text.count(marker) != 1:
            raise SystemExit(f"{part.doc} must hold the marker {marker!r} exactly once "
                             f"(found {text.count(marker)})")
    a, b = text.index(part.start) + len(part.start), text.index(part.end)
    if a > b:
        raise SystemExit(f"{part.doc}: {part.end!r} comes before its start marker")
    return a, b


def current(text: str, part: Table | Figure) -> str:
    """The part as the document holds it now (between the markers; a block without its surrounding blank lines)."""
    a, b = _span(text, part)
    return text[a:b] if part.inline else text[a:b].strip("\n")


def parts(doc: str = "README.md") -> tuple:
    return tuple(p for p in GENERATED if p.doc == doc)


def updated(text: str, registries: Mapping[str, Mapping[str, type]] | None = None, doc: str = "README.md") -> str:
    """``text`` (the contents of ``doc``) with every generated part regenerated; ``registries`` (by key) overrides."""
    registries = registries or {}
    for part in parts(doc):
        a, b = _span(text, part)
        new = render(part, registries.get(part.key))
        text = text[:a] + (new if part.inline else "\n\n" + new + "\n\n") + text[b:]
    return text


def stale(text: str, registries: Mapping[str, Mapping[str, type]] | None = None, doc: str = "README.md") -> list[str]:
    """The keys of the parts of ``doc`` whose copy in ``text`` differs from what the registry or results give (a
    part whose results are missing is stale too)."""
    registries = registries or {}
    out = []
    for part in parts(doc):
        try:
            fresh = render(part, registries.get(part.key))
        except LookupError:
            fresh = None
        if current(text, part) != fresh:
            out.append(part.key)
    return out


def problems(text: str, doc: str = "README.md") -> list[str]:
    """Why parts of ``doc`` cannot be generated (their results are missing), one line each."""
    out = []
    for part in parts(doc):
        try:
            render(part)
        except LookupError as e:
            out.append(f"{part.key}: {e}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a generated part is out of date; write nothing")
    ap.add_argument("--readme", type=Path, default=None, help="the README (default: the repository's)")
    ap.add_argument("--reliability", type=Path, default=None, help="RELIABILITY.md (default: the repository's)")
    args = ap.parse_args(argv)
    docs = [("README.md", args.readme), ("RELIABILITY.md", args.reliability)]
    if all(path is None for _, path in docs):  # neither named: both of the repository's; else only those named
        docs = [("README.md", README), ("RELIABILITY.md", RELIABILITY)]
    rc = 0
    for doc, path in ((d, p) for d, p in docs if p is not None):
        text = path.read_text(encoding="utf-8")
        why = problems(text, doc)
        if args.check:
            bad = stale(text, doc=doc)
            if bad:
                print(f"{path.name}: {', '.join(bad)} out of date with the registry or bench/results; run: python "
                      f"{SCRIPT}" + (f" (missing: {'; '.join(why)})" if why else ""), file=sys.stderr)
                rc = 1
            continue
        if why:
            print(f"{path.name}: cannot generate {'; '.join(why)}", file=sys.stderr)
            rc = 1
            continue
        new = updated(text, doc=doc)
        if new != text:
            from lab.io import atomic_write_text

            atomic_write_text(path, new)
            print(f"updated {path}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
