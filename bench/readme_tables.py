"""The README's method tables, generated from the registries (``lab.methods.REGISTRY``, ``lab.kd.KD_REGISTRY``).

Each table sits between a pair of marker comments in README.md; everything between them is rewritten,
nothing else is touched. Edit a method's ``family`` / ``mechanism`` / ``paper`` on its class, then:

    python bench/readme_tables.py           # rewrite the tables in README.md
    python bench/readme_tables.py --check   # exit 1 with a one-line message if README.md is out of date

``tests/test_readme_tables.py`` runs the check.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
SCRIPT = "bench/readme_tables.py"


@dataclass(frozen=True)
class Table:
    """One generated table: its marker id, header and one row (a tuple of cells) per registered class."""

    key: str
    registry: str
    header: tuple[str, ...]
    row: Callable[[dict], tuple[str, ...]]
    load: Callable[[], Mapping[str, type]]

    @property
    def start(self) -> str:
        return f"<!-- {self.key}:start (generated from {self.registry} by {SCRIPT}: edit the registry, not this table) -->"

    @property
    def end(self) -> str:
        return f"<!-- {self.key}:end -->"


def _step_registry() -> Mapping[str, type]:
    from lab.methods import REGISTRY

    return REGISTRY


def _kd_registry() -> Mapping[str, type]:
    from lab.kd import KD_REGISTRY

    return KD_REGISTRY


TABLES = (
    Table("methods-table", "lab.methods.REGISTRY", ("name", "family", "mechanism", "paper"),
          lambda d: (f"`{d['name']}`", d["family"], d["mechanism"], d["paper"]), _step_registry),
    Table("kd-methods-table", "lab.kd.KD_REGISTRY", ("name", "tasks", "mechanism", "paper"),
          lambda d: (f"`{d['name']}`", ", ".join(d["kinds"]), d["mechanism"], d["paper"]), _kd_registry),
)


def cell(text: str) -> str:
    """One markdown table cell: ``|`` escaped; a line break would end the row, so it is refused."""
    text = str(text).strip()
    if "\n" in text or "\r" in text:
        raise ValueError(f"a table cell must be one line: {text!r}")
    return text.replace("|", r"\|")


def render(table: Table, registry: Mapping[str, type] | None = None) -> str:
    """The table's markdown (header, rule, one row per method sorted by name), without the markers."""
    registry = table.load() if registry is None else registry
    lines = ["| " + " | ".join(table.header) + " |", "|" + "---|" * len(table.header)]
    for name in sorted(registry):
        lines.append("| " + " | ".join(cell(c) for c in table.row(registry[name].describe())) + " |")
    return "\n".join(lines)


def _span(text: str, table: Table) -> tuple[int, int]:
    """(start, end) of the text between the table's markers; a missing or repeated marker is an error."""
    for marker in (table.start, table.end):
        if text.count(marker) != 1:
            raise SystemExit(f"README.md must hold the marker {marker!r} exactly once "
                             f"(found {text.count(marker)})")
    a, b = text.index(table.start) + len(table.start), text.index(table.end)
    if a > b:
        raise SystemExit(f"README.md: {table.end!r} comes before its start marker")
    return a, b


def current(text: str, table: Table) -> str:
    """The table as README.md holds it now (between the markers, without surrounding blank lines)."""
    a, b = _span(text, table)
    return text[a:b].strip("\n")


def updated(text: str, registries: Mapping[str, Mapping[str, type]] | None = None) -> str:
    """``text`` (README.md's contents) with every table regenerated; ``registries`` (by table key) overrides."""
    registries = registries or {}
    for table in TABLES:
        a, b = _span(text, table)
        text = text[:a] + "\n\n" + render(table, registries.get(table.key)) + "\n\n" + text[b:]
    return text


def stale(text: str, registries: Mapping[str, Mapping[str, type]] | None = None) -> list[str]:
    """The keys of the tables whose README.md copy differs from the registry."""
    registries = registries or {}
    return [t.key for t in TABLES if current(text, t) != render(t, registries.get(t.key))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if README.md's tables are out of date; write nothing")
    ap.add_argument("--readme", type=Path, default=README, help="the README to update (default: the repository's)")
    args = ap.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8")
    if args.check:
        bad = stale(text)
        if bad:
            print(f"{args.readme.name}: {', '.join(bad)} out of date with the registry; run: python {SCRIPT}",
                  file=sys.stderr)
            return 1
        return 0
    new = updated(text)
    if new != text:
        from lab.io import atomic_write_text

        atomic_write_text(args.readme, new)
        print(f"updated {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
