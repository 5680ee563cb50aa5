"""README.md's method tables are generated from the registries by bench/readme_tables.py and must match them."""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "bench" / "readme_tables.py")
rt = sys.modules["readme_tables"] = importlib.util.module_from_spec(_spec)  # dataclasses look the module up
_spec.loader.exec_module(rt)

TABLES = {t.key: t for t in rt.TABLES}


def _readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def _cells(row: str) -> list[str]:
    """A markdown table row split on its unescaped pipes."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", row.strip())[1:-1]]


def _names(table_md: str) -> list[str]:
    return [_cells(r)[0].strip("`") for r in table_md.splitlines()[2:]]


class _Fake:
    name = "zz_fake"

    @classmethod
    def describe(cls) -> dict:
        return {"name": cls.name, "family": "fake | family", "mechanism": "a | b", "paper": "nobody",
                "kinds": ["classify"]}


@pytest.mark.parametrize("key", sorted(TABLES))
def test_readme_table_is_the_generated_one(key):
    table = TABLES[key]
    assert rt.current(_readme(), table) == rt.render(table), \
        f"README.md's {key} is out of date; run: python bench/readme_tables.py"


def test_check_passes_on_the_readme():
    assert rt.main(["--check"]) == 0
    assert rt.stale(_readme()) == []


@pytest.mark.parametrize("key", sorted(TABLES))
def test_every_registered_method_is_in_its_table_once(key):
    table = TABLES[key]
    registry = table.load()
    names = _names(rt.current(_readme(), table))
    assert sorted(names) == sorted(registry), key
    assert len(names) == len(set(names)), key
    for row in rt.current(_readme(), table).splitlines():
        assert len(_cells(row)) == len(table.header), row


@pytest.mark.parametrize("key", sorted(TABLES))
def test_an_unlisted_method_makes_the_check_fail(key, monkeypatch, tmp_path, capsys):
    """Control: register a fake method; the README no longer matches, --check says so, an update fixes it."""
    table = TABLES[key]
    monkeypatch.setitem(table.load(), _Fake.name, _Fake)
    assert key in rt.stale(_readme())
    assert rt.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and key in err and "bench/readme_tables.py" in err

    copy = tmp_path / "README.md"
    copy.write_text(_readme(), encoding="utf-8")
    assert rt.main(["--readme", str(copy)]) == 0
    assert rt.main(["--check", "--readme", str(copy)]) == 0
    fixed = copy.read_text(encoding="utf-8")
    assert _names(rt.current(fixed, table)).count(_Fake.name) == 1
    row = next(r for r in rt.current(fixed, table).splitlines() if f"`{_Fake.name}`" in r)
    assert r"a \| b" in row and len(_cells(row)) == len(table.header)
    # only the table changed: the text outside the markers is the same
    assert fixed.replace(rt.current(fixed, table), "") == _readme().replace(rt.current(_readme(), table), "")


def test_markers_are_required(tmp_path):
    copy = tmp_path / "README.md"
    copy.write_text(_readme().replace(rt.TABLES[0].end, ""), encoding="utf-8")
    with pytest.raises(SystemExit, match="marker"):
        rt.main(["--check", "--readme", str(copy)])


def test_a_multiline_cell_is_refused():
    with pytest.raises(ValueError, match="one line"):
        rt.cell("two\nlines")
