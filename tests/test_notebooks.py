"""The workshop notebooks: each one runs top to bottom, and is committed without outputs.

Every ``notebooks/*.ipynb`` is executed with nbclient in a ``python3`` kernel (cwd = notebooks/).
The kernel must be this virtualenv's Python: a first, injected cell reports the kernel's
``sys.prefix`` and the test stops there if it is another interpreter's. If it is, install the
venv's kernelspec with ``.venv/bin/python -m ipykernel install --sys-prefix``.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("*.ipynb"))
KERNEL = "python3"

pytestmark = pytest.mark.notebook


def _ids(path: Path) -> str:
    return path.name


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks in {NB_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: code cells {dirty} have outputs or execution counts; clear them before committing " \
                      f"(jupyter nbconvert --clear-output --inplace {path.relative_to(ROOT)})"
    assert nb.metadata.get("kernelspec", {}).get("name") == KERNEL, f"{path.name}: kernelspec must be {KERNEL!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_notebook_runs(path):
    nb = nbformat.read(path, as_version=4)
    probe = nbformat.v4.new_code_cell("import sys\nprint(sys.prefix)\nprint(sys.executable)")
    nb.cells.insert(0, probe)
    client = NotebookClient(nb, timeout=600, kernel_name=KERNEL, resources={"metadata": {"path": str(NB_DIR)}})
    t0 = time.perf_counter()
    with client.setup_kernel():
        client.execute_cell(probe, 0)
        prefix, executable = (_text(probe).splitlines() + ["", ""])[:2]
        assert Path(prefix).resolve() == Path(sys.prefix).resolve(), (
            f"kernel {KERNEL!r} runs {executable!r} (prefix {prefix!r}), not this environment's {sys.executable!r}; "
            f"run `{sys.executable} -m ipykernel install --sys-prefix`")
        for index, cell in enumerate(nb.cells[1:], start=1):
            try:
                client.execute_cell(cell, index)
            except CellExecutionError as e:
                src = cell.source if len(cell.source) < 800 else cell.source[:800] + "\n..."
                pytest.fail(f"{path.name}: cell {index - 1} (0-based, markdown cells counted) failed:\n{src}\n\n{e}",
                            pytrace=False)
    print(f"{path.name}: executed in {time.perf_counter() - t0:.1f} s")
