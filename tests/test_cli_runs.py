"""`lab runs list` and the app list run folders from the same root: $LAB_RUNS (lab.io.runs_root)."""
from __future__ import annotations

from lab.cli import run
from lab.io import runs_root
from lab.runs import Run


def test_runs_list_honours_lab_runs(tmp_path, monkeypatch, capsys):
    root = tmp_path / "elsewhere"
    Run.create(root / "my-run", {"kind": "distill", "method": "dmd", "data": "toy2d:moons"})
    monkeypatch.chdir(tmp_path)  # ./runs does not exist here
    monkeypatch.delenv("LAB_RUNS", raising=False)
    assert run(["runs", "list"]) == 0
    assert "no runs found" in capsys.readouterr().out
    monkeypatch.setenv("LAB_RUNS", str(root))
    assert runs_root() == root
    assert run(["runs", "list"]) == 0
    out = capsys.readouterr().out
    assert "my-run" in out and "dmd" in out
    (tmp_path / "other").mkdir()
    assert run(["runs", "list", "--root", str(tmp_path / "other")]) == 0  # an explicit root wins
    assert "no runs found" in capsys.readouterr().out
