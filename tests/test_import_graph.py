"""The layers of lab/ (issue 13, item 2), checked on the code with bench/import_graph.py (ast; nothing imported).

Fails on a cycle between modules, a cycle between the packages under lab/, and an import that climbs
``LAYERS`` (the order written in ``lab/__init__``'s docstring). Controls run the same analysis on a tiny fake
package, so each check is shown able to fail.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_graph():
    spec = importlib.util.spec_from_file_location("lab_import_graph", ROOT / "bench" / "import_graph.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


graph = _load_graph()

def _measure(root: Path, lab: Path, monkeypatch=None) -> dict:
    if monkeypatch is not None:
        monkeypatch.setattr(graph, "ROOT", root)
        monkeypatch.setattr(graph, "LAB", lab)
    return graph.measure()


def test_no_package_cycle():
    assert graph.measure()["package_cycles"] == []


def test_no_upward_import():
    m = graph.measure()
    assert m["upward_imports"] == 0, m["upward_examples"]


def test_no_module_cycle():
    assert graph.measure()["module_cycle_members"] == []


def test_every_package_has_a_layer():
    pkgs = {graph.package(graph.module_name(p)) for p in graph.LAB.rglob("*.py")}
    assert [p for p in sorted(pkgs) if graph.layer_of(p) is None] == []


def test_layers_are_declared_in_lab_docstring():
    doc = (ROOT / "lab" / "__init__.py").read_text().split('"""')[1]
    for names in graph.LAYERS:
        shown = [n for n in names if n != "__init__"]
        assert any(all(n in line for n in shown) for line in doc.splitlines()), names


def _fake_lab(tmp_path: Path, files: dict[str, str]) -> Path:
    lab = tmp_path / "lab"
    for rel, text in files.items():
        p = lab / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return lab


def test_control_checker_sees_cycles_and_upward_imports(tmp_path, monkeypatch):
    lab = _fake_lab(tmp_path, {
        "__init__.py": "",
        "nets/__init__.py": "",
        "nets/a.py": "def f():\n    from lab.probes.b import g\n",  # upward (nets < probes), inside a function
        "probes/__init__.py": "",
        "probes/b.py": "from lab.nets.a import f\n",
        "io.py": "from lab.errors import E\n",
        "errors.py": "from lab import io\n",
    })
    m = _measure(tmp_path, lab, monkeypatch)
    assert m["upward_imports"] == 1 and "lab.nets.a -> lab.probes.b" in m["upward_examples"][0]
    assert ["nets", "probes"] in m["package_cycles"]
    assert ["lab.nets.a", "lab.probes.b"] in m["module_cycle_members"]
    assert ["lab.errors", "lab.io"] in m["module_cycle_members"]
    assert m["imports_inside_functions"] == 1


def test_control_clean_fake_package_passes(tmp_path, monkeypatch):
    lab = _fake_lab(tmp_path, {"__init__.py": "", "nets/__init__.py": "", "nets/a.py": "from lab.errors import E\n",
                               "probes/__init__.py": "", "probes/b.py": "from lab.nets.a import f\n",
                               "errors.py": ""})
    m = _measure(tmp_path, lab, monkeypatch)
    assert (m["upward_imports"], m["package_cycles"], m["module_cycle_members"]) == (0, [], [])


def _uncommented_function_imports(lab: Path) -> list[str]:
    """``file:line`` of each ``lab.*`` import inside a function under ``lab`` with no ``#`` comment on its line or
    the line above."""
    files = sorted(lab.rglob("*.py"))
    modules = {graph.module_name(p) for p in files}
    bad = []
    for p in files:
        lines = p.read_text().splitlines()
        for _, in_func, line in graph.imports(p, modules):
            here = lines[line - 1]
            above = lines[line - 2] if line > 1 else ""
            if in_func and "#" not in here and not above.lstrip().startswith("#"):
                bad.append(f"{p.relative_to(graph.ROOT)}:{line}")
    return sorted(set(bad))


def test_function_level_imports_say_why():
    bad = _uncommented_function_imports(graph.LAB)
    assert bad == [], "lab.* imports inside functions without a comment saying why:\n" + "\n".join(bad)


def test_control_uncommented_function_import_is_caught(tmp_path, monkeypatch):
    lab = _fake_lab(tmp_path, {
        "__init__.py": "",
        "errors.py": "",
        "a.py": "def f():\n    from lab.errors import E\n",
        "b.py": "def g():\n    from lab.errors import E  # lazy: reason\n",
        "c.py": "def h():\n    # late: reason\n    from lab import errors\n",
    })
    monkeypatch.setattr(graph, "ROOT", tmp_path)
    monkeypatch.setattr(graph, "LAB", lab)
    assert _uncommented_function_imports(lab) == ["lab/a.py:2"]


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
