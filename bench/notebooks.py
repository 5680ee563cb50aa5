"""Times the workshop notebooks (notebooks/NN_*.ipynb) in workshop mode and in FAST mode.

Workshop mode is the notebook as a participant runs it top to bottom (``FAST = False``, its parameters cell
untouched); FAST mode injects ``FAST = True`` right after the cell tagged "parameters" and then runs the notebook's
solutions (``notebooks/solutions/<stem>.py``) in the same kernel, as ``tests/test_notebooks.py`` does. Each run is
one fresh ``python3`` kernel started in notebooks/ (so ``import workshop`` works) with ``LAB_NUM_THREADS`` as
``make lab`` sets it (1), one notebook at a time. Each result is a JSON row in ``bench/results/notebooks/`` and the
"## Notebooks (workshop mode)" section of bench/RESULTS.md is rebuilt from the rows, so notebooks can be
(re)measured one at a time. The goal: at most 3 minutes per notebook in workshop mode on an idle 2-core machine;
each row records the load average when it started, so a number measured on a busy machine says so.

    python bench/notebooks.py                                  # every notebook, both modes; prints the table
    python bench/notebooks.py 05_diffusion_refresher --modes fast
    python bench/notebooks.py --write                          # also rewrite the RESULTS.md section
    python bench/notebooks.py --write --rows-only              # only rebuild the section from the rows
    python bench/notebooks.py --kit [--write]                  # docs/workshop.md's cheat sheet and exercises

``execute`` is also what the test suite runs (tests/test_notebooks.py imports this file).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
SOL_DIR = NB_DIR / "solutions"
RESULTS = ROOT / "bench" / "results" / "notebooks"
SECTION = "## Notebooks (workshop mode)"
KERNEL = "python3"
STEM = re.compile(r"^\d\d_\w+$")
GOAL_S = 180.0        # workshop mode, per notebook (issue 15)
FAST_GOAL_S = 30.0    # FAST mode, notebook only (the conventions)
MARK = "__workshop_passed__"


class NotebookFailed(Exception):
    """A cell raised, or the kernel is not this environment's Python; the message names the notebook and the cell."""


def stems() -> list[str]:
    """The curriculum's notebooks: every ``NN_name`` with a .ipynb or a .py in notebooks/ (sorted)."""
    return sorted({p.stem for p in NB_DIR.glob("*") if p.suffix in (".ipynb", ".py") and STEM.match(p.stem)})


def read(stem: str):
    import nbformat

    return nbformat.read(NB_DIR / f"{stem}.ipynb", as_version=4)


def parameters_index(nb) -> int | None:
    """The index of the code cell tagged "parameters" (the first one), or None."""
    return next((i for i, c in enumerate(nb.cells)
                 if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])), None)


def with_fast(nb):
    """A copy of ``nb`` with a cell ``FAST = True`` (tagged "injected-parameters") right after its parameters cell."""
    import nbformat

    i = parameters_index(nb)
    if i is None:
        raise NotebookFailed("no code cell tagged 'parameters' (it holds `FAST = False`)")
    nb = copy.deepcopy(nb)
    cell = nbformat.v4.new_code_cell("FAST = True  # injected: the test suite's fast mode")
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(i + 1, cell)
    return nb


def solution_path(stem: str) -> Path:
    return SOL_DIR / f"{stem}.py"


def solution_cells(stem: str) -> list:
    """The cells of ``notebooks/solutions/<stem>.py`` (py:percent, read with jupytext)."""
    import jupytext

    path = solution_path(stem)
    if not path.exists():
        raise NotebookFailed(f"{stem}: no solutions file {path.relative_to(ROOT)} (one py:percent script with a "
                             f"'Solution NN.k' markdown cell and a workshop.check call per exercise)")
    return jupytext.read(path, fmt="py:percent").cells


def _stdout(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stdout")


def _passed(client, nb) -> list[str]:
    """``workshop.PASSED`` in the kernel (a cell appended to ``nb`` and run)."""
    return _kernel_json(client, nb, "sorted(_w.PASSED)") or []


def _measured(client, nb) -> dict:
    """``workshop.MEASURED`` in the kernel: the values of each exercise's last check."""
    return _kernel_json(client, nb, "_w.MEASURED") or {}


def _kernel_json(client, nb, expr: str):
    import nbformat

    cell = nbformat.v4.new_code_cell(f"import json as _j, workshop as _w\nprint({MARK!r}, _j.dumps({expr}))")
    nb.cells.append(cell)
    client.execute_cell(cell, len(nb.cells) - 1)
    line = next((l for l in _stdout(cell).splitlines() if l.startswith(MARK)), None)
    return json.loads(line[len(MARK):]) if line else None


def _run(client, nb, indices, labels: list, what: str, times: list) -> float:
    """Execute the code cells ``nb.cells[i]`` for ``i`` in ``indices``; ``labels[i]`` names cell i in messages."""
    from nbclient.exceptions import CellExecutionError

    t0 = time.perf_counter()
    for i in indices:
        cell = nb.cells[i]
        if cell.cell_type != "code":
            continue
        t = time.perf_counter()
        try:
            client.execute_cell(cell, i)
        except CellExecutionError as e:
            src = cell.source if len(cell.source) < 800 else cell.source[:800] + "\n..."
            raise NotebookFailed(f"{what}: {labels[i]} failed:\n{src}\n\n{e}") from None
        first = next((l for l in cell.source.splitlines() if l.strip() and not l.startswith("#")), "")
        times.append((time.perf_counter() - t, what, labels[i], first[:60]))
    return time.perf_counter() - t0


def execute(stem: str, fast: bool = True, solutions: bool = True, timeout: int = 600) -> dict:
    """Run notebook ``stem`` in a fresh ``python3`` kernel (cwd notebooks/): with ``fast``, a ``FAST = True`` cell is
    injected after its parameters cell; with ``solutions``, its solutions file's code cells run next in the same
    kernel. Returns the times (kernel start, notebook, solutions, slowest cells) and ``workshop.PASSED`` after the
    notebook (``passed_before``) and after the solutions (``passed``). A failing cell, or a kernel that is not this
    environment's Python, raises :class:`NotebookFailed` naming the cell (0-based, markdown cells counted)."""
    import nbformat
    from nbclient import NotebookClient

    nb = read(stem)
    labels = [f"cell {i}" for i in range(len(nb.cells))]
    if fast:
        nb = with_fast(nb)
        j = parameters_index(nb) + 1
        labels.insert(j, "the injected FAST cell")
    sol = [c for c in solution_cells(stem) if c.cell_type == "code"] if solutions else []
    probe = nbformat.v4.new_code_cell("import sys\nprint(sys.prefix)\nprint(sys.executable)")
    nb.cells.insert(0, probe)
    labels.insert(0, "the kernel probe")
    n_nb = len(nb.cells)
    nb.cells.extend(sol)
    labels += [f"code cell {k} (0-based, code cells only)" for k in range(len(sol))]
    env = {**os.environ, "LAB_NUM_THREADS": os.environ.get("LAB_NUM_THREADS", "1"),
           "PLOTLY_RENDERER": "plotly_mimetype"}  # fig.show() sends the figure's JSON, never plotly.js itself
    client = NotebookClient(nb, timeout=timeout, kernel_name=KERNEL, resources={"metadata": {"path": str(NB_DIR)}})
    out: dict = {"stem": stem, "fast": fast, "load_before": round(os.getloadavg()[0], 2)}
    times: list = []
    t0 = time.perf_counter()
    with client.setup_kernel(env=env):
        client.execute_cell(probe, 0)
        out["t_kernel"] = time.perf_counter() - t0
        prefix, executable = (_stdout(probe).splitlines() + ["", ""])[:2]
        if Path(prefix).resolve() != Path(sys.prefix).resolve():
            raise NotebookFailed(f"kernel {KERNEL!r} runs {executable!r} (prefix {prefix!r}), not this environment's "
                                 f"{sys.executable!r}; run `{sys.executable} -m ipykernel install --sys-prefix`")
        where = f"{stem}.ipynb" + (" (FAST)" if fast else "")
        out["t_notebook"] = _run(client, nb, range(1, n_nb), labels, where, times)
        out["passed_before"] = _passed(client, nb)
        out["t_solutions"] = _run(client, nb, range(n_nb, n_nb + len(sol)), labels, f"solutions/{stem}.py", times)
        out["passed"] = _passed(client, nb) if solutions else out["passed_before"]
        out["measured"] = _measured(client, nb)
    out["t_total"] = time.perf_counter() - t0
    out["slowest"] = [{"s": round(s, 2), "where": w, "cell": c, "first_line": f}
                      for s, w, c, f in sorted(times, key=lambda r: -r[0])[:3]]
    return out


# ------------------------------------------------------------------------------------------------ the section
def _row_path(stem: str) -> Path:
    return RESULTS / f"{stem}.json"


def measure(stem: str, modes: tuple[str, ...]) -> dict:
    row = json.loads(_row_path(stem).read_text()) if _row_path(stem).exists() else {"stem": stem}
    for mode in modes:
        try:
            r = execute(stem, fast=(mode == "fast"), solutions=True)  # the notebook's own time excludes them
            r.pop("passed_before", None)
        except Exception as e:  # noqa: BLE001 - a failing notebook is a row that says so, the others still run
            r = {"error": str(e).splitlines()[0][:200], "load_before": round(os.getloadavg()[0], 2)}
        r.update({"date": time.strftime("%Y-%m-%d %H:%M"), "threads": os.environ.get("LAB_NUM_THREADS", "1")})
        row[mode] = r
        print(f"{stem} [{mode}]: " + (f"error: {r['error']}" if "error" in r else
                                      f"notebook {r['t_notebook']:.1f} s, solutions {r['t_solutions']:.1f} s, "
                                      f"kernel start {r['t_kernel']:.1f} s (load {r['load_before']})"), flush=True)
    row["platform"] = f"{platform.platform()}, {os.cpu_count()} cores"
    RESULTS.mkdir(parents=True, exist_ok=True)
    _row_path(stem).write_text(json.dumps(row, indent=1))
    return row


def _cell(r: dict | None, key: str, goal: float | None = None) -> str:
    if not r:
        return "not measured"
    if "error" in r:
        return "fails"
    v = r[key]
    return f"{v:.0f} s" + (" ✗" if goal is not None and v > goal else "")


def table() -> str:
    """The section: one row per notebook found (measured or not)."""
    import nbformat

    out = [SECTION, "",
           "`python bench/notebooks.py` (one notebook at a time, a fresh kernel each, `LAB_NUM_THREADS=1` as `make lab` "
           "sets it). Workshop mode: the notebook top to bottom as a participant runs it (goal: at most 3 min on an "
           "idle 2-core machine; ✗ marks a notebook over it). FAST: the test suite's mode (`FAST = True` injected "
           "after the parameters cell), then the notebook's solutions in the same kernel. Load: the 1-minute load "
           "average when the run started (2 cores: above 2 the machine was busy and the times are pessimistic).", "",
           "| notebook | workshop mode | load | FAST mode | solutions (FAST) | exercises passed | slowest cell "
           "(workshop mode) |", "|---|---|---|---|---|---|---|"]
    rows, platforms = [], set()
    for stem in stems():
        p = _row_path(stem)
        row = json.loads(p.read_text()) if p.exists() else {}
        w, f = row.get("workshop"), row.get("fast")
        if row.get("platform"):
            platforms.add(row["platform"])
        n_ex = None
        try:
            n_ex = sum(len(re.findall(r"(?m)^###\s+Exercise\s+\d\d\.\d+", c.source)) for c in read(stem).cells
                       if c.cell_type == "markdown")
        except (OSError, nbformat.ValidationError):
            pass
        passed = f"{len(f['passed'])} / {n_ex}" if f and "passed" in f and n_ex is not None else "–"
        slow = w["slowest"][0] if w and w.get("slowest") else None
        slow_txt = f"{slow['s']:.0f} s: `{slow['first_line']}`" if slow else "–"
        rows.append(f"| `{stem}` | {_cell(w, 't_notebook', GOAL_S)} | {w.get('load_before', '–') if w else '–'} | "
                    f"{_cell(f, 't_notebook', FAST_GOAL_S)} | {_cell(f, 't_solutions')} | {passed} | {slow_txt} |")
    tot = [json.loads(_row_path(s).read_text()).get("workshop", {}) for s in stems() if _row_path(s).exists()]
    tot = [r["t_notebook"] for r in tot if "t_notebook" in r]
    out += rows
    out += ["", f"Workshop mode, all measured notebooks: {sum(tot) / 60:.1f} min in total." if tot else "",
            f"Machine: {'; '.join(sorted(platforms)) or 'not measured yet'}.", ""]
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------ the kit
#: what each KD method's internals look like with the lab's probes (step methods: lab.probes.inside, read below)
KD_VIEWS = {
    "kd": "`targets(batch)`: tempered teacher vs student; divergence explorer (forward KL covers both modes)",
    "rkl": "divergence explorer (reverse KL: the one-mode student sits on one mode)",
    "jsd": "divergence explorer (beta from forward KL at 0 to reverse KL at 1)",
    "skew_kl": "divergence explorer (skew forward / reverse KL, alpha)",
    "tvd": "divergence explorer (TVD)",
    "taid": "`lab.probes.taid`: its t over training and the interpolated targets p_t between student and teacher",
    "dkd": "`lab.kd.logit.dkd.dkd_terms`: the target-class (TCKD) and non-target (NCKD) parts of the KL",
    "bdkd": "`targets(batch).info['w_rev']`: per-sample weight of reverse KL (where the student is the more confident)",
    "function_matching": "`mix(x)`: the shared augmented inputs (shift, mixup) teacher and student both see",
    "fitnets": "layer CKA teacher vs student (`lab.probes.kd.layer_cka`), embeddings of the hinted layer",
    "at": "`lab.kd.feature.at.attention_map`: teacher and student spatial attention maps; layer CKA",
    "vkd": "layer CKA and embeddings (`lab.probes.embeddings`) of the projected student features",
    "rkd": "layer CKA: the batch's relations (distances, angles) are matched, not the features",
    "ofa": "per-stage branch logits against the teacher (CNN teacher, ViT student); layer CKA",
    "minilm": "`lab.kd.feature.minilm`: last-layer attention and value-relation distributions, teacher vs student",
    "dml": "`peer_logits(x)`: the cohort's predictions on the same inputs (no pre-trained teacher)",
    "born_again": "`generation`, `evaluate_ensemble()`: each generation's accuracy against the one that taught it",
    "scratch": "the baseline: the same student with labels only (no teacher)",
    "gkd": "`lab.probes.lm.gkd_compare`: KL to the truth on true sequences and on the student's own samples, per λ",
    "diswot": "`diswot.search(...)`: per-candidate semantic and relation scores against their accuracy after KD "
              "(`attrs['kendall_tau']`)",
}
DD_VIEWS = {"*": "`lab.probes.dd`: the synthetic images per class over the iterations; accuracy against images per class",
            "mtt": "`lab.probes.dd`: the images over the iterations; expert and student parameter paths (PCA); the "
                   "accumulated trajectory error"}
VIEW_TITLES = {"decision": "discriminator decision field", "path_error": "path error against the teacher's ODE",
               "consistency_grid": "consistency along the training grid", "fake_score_error":
               "fake-score error while it is fitted", "guidance_sweep": "guidance-weight sweep",
               "student_split": "which small student makes which samples", "schedule": "its schedule over training",
               "scm": "sCM tangent and adaptive weight", "straightness": "straightness: teacher vs reflowed paths",
               "segments": "segment boundaries and jumps"}
FIELD_TITLES = {"scores": "real minus fake score", "decision": "discriminator gradient", "targets":
                "regression targets", "segments": "segment jumps", "particles": "force on the particles",
                "pairs": "pairs to the teacher's endpoints"}


def code_words(nb) -> set[str]:
    """Every string constant (and its '/'- or ':'-separated parts) and every name in ``nb``'s code cells (IPython
    magics and shell lines, at column 0, left out; a cell that does not parse is skipped)."""
    import ast

    words: set[str] = set()
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        try:
            tree = ast.parse("\n".join("" if l.startswith(("%", "!")) else l for l in c.source.splitlines()))
        except SyntaxError:
            continue
        for n in ast.walk(tree):
            if isinstance(n, ast.Constant) and isinstance(n.value, str):
                words |= {n.value, *re.split(r"[/:]", n.value)}
            elif isinstance(n, ast.Name):
                words.add(n.id)
            elif isinstance(n, ast.Attribute):
                words.add(n.attr)
            elif isinstance(n, ast.alias):
                words |= set(n.name.split("."))
    return words


def _taught() -> dict[str, list[str]]:
    """name -> the notebooks whose code cells name it (:func:`code_words`)."""
    import jupytext

    out: dict[str, list[str]] = {}
    for stem in stems():
        p = NB_DIR / f"{stem}.ipynb"
        words = code_words(jupytext.read(p if p.exists() else NB_DIR / f"{stem}.py"))
        for w in words:
            out.setdefault(w, []).append(stem[:2])
    return out


def cheatsheet() -> str:
    """The methods' one-page table, from the registries (``describe()``), the zoo students' model cards (NFE) and
    lab.probes.inside / lab.probes.fields (what the internal view shows); the notebooks that name each method."""
    import lab
    import lab.kd
    from lab.probes.fields import field_kind
    from lab.probes.inside import OWN_KINDS

    taught = _taught()
    rows = ["| method | family | mechanism | NFE | internal view | notebook |", "|---|---|---|---|---|---|"]
    for m in lab.list_methods():
        d = lab.get_method(m).describe()
        card = ROOT / "assets" / "zoo" / "toy2d" / "8gaussians" / m / "model.json"
        nfe = ", ".join(map(str, json.loads(card.read_text())["native_nfe"])) if card.exists() else "–"
        view = f"{VIEW_TITLES.get(OWN_KINDS.get(m), OWN_KINDS.get(m, '–'))}; field: {FIELD_TITLES[field_kind(m)]}"
        rows.append(f"| `{m}` | {d['family']} | {d['mechanism']} | {nfe} | {view} | "
                    f"{', '.join(taught.get(m, [])) or '–'} |")
    for m in lab.kd.list_methods():
        d = lab.kd.get(m).describe()
        rows.append(f"| `{m}` | KD ({', '.join(d['kinds'])}) | {d['mechanism']} | 1 pass | {KD_VIEWS.get(m, '–')} | "
                    f"{', '.join(taught.get(m, [])) or '–'} |")
    import lab.dd

    for m in lab.dd.list_methods():
        d = lab.dd.get(m).describe()
        view = DD_VIEWS["mtt"] if m in ("mtt", "ftd") else DD_VIEWS["*"]
        rows.append(f"| `{m}` | {d['family']} | {d['mechanism']} | – | {view} | {', '.join(taught.get(m, [])) or '–'} |")
    rows.append(f"| `diswot` | KD: student search | scores untrained candidate students against a random teacher on "
                f"one batch (semantic + relation similarity); no training | – | {KD_VIEWS['diswot']} | "
                f"{', '.join(taught.get('diswot', [])) or '–'} |")
    return "\n".join(rows)


def exercises_md() -> str:
    """Each notebook's exercises (from notebooks/workshop/checks_NN.py): id, what to find, the check."""
    sys.path.insert(0, str(NB_DIR))
    import workshop

    out = []
    for stem in stems():
        for e in workshop.exercises_of(stem):
            out.append(f"- **{e.id}** ({stem}): find {e.find}. Check: {e.check}.")
    return "\n".join(out)


def _v(v) -> str:
    """A measured value, short: floats to 3 significant digits, also inside a dict or a list (as the kernel's
    ``workshop.MEASURED`` holds them: a dict or list arrives as its text)."""
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, str) and v[:1] in "{[":
        try:
            import ast

            v = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            return v
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_v(float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else x)}"
                               for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_v(float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else x)
                               for x in v) + "]"
    return str(v)


def expected_md() -> str:
    """The expected-numbers table of docs/workshop.md, from the stored workshop-mode rows: each notebook's run time
    and, per exercise, the values its solution measured (with whether the check passed)."""
    out = ["| notebook | workshop mode (s) | load | exercise: values measured by the solution (workshop mode) |",
           "|---|---|---|---|"]
    for stem in stems():
        row = json.loads(_row_path(stem).read_text()) if _row_path(stem).exists() else {}
        w = row.get("workshop") or {}
        if not w or "error" in w:
            out.append(f"| `{stem}` | {'error' if 'error' in w else 'not measured'} | – | – |")
            continue
        passed = set(w.get("passed", []))
        ex = "<br>".join(f"**{i}** {'✓' if i in passed else '✗'} " + ", ".join(f"{k} = {_v(x)}" for k, x in vals.items())
                         for i, vals in sorted((w.get("measured") or {}).items()))
        out.append(f"| `{stem}` | {w['t_notebook']:.0f} | {w.get('load_before', '–')} | {ex or '–'} |")
    return "\n".join(out)


DOC = ROOT / "docs" / "workshop.md"


def write_kit(parts: dict[str, str], path: Path = DOC) -> None:
    """Replace each ``<!-- generated: NAME -->`` ... ``<!-- end: NAME -->`` block of docs/workshop.md."""
    text = path.read_text()
    for name, body in parts.items():
        pat = re.compile(rf"(<!-- generated: {name} [^>]*-->\n).*?(\n<!-- end: {name} -->)", re.S)
        if not pat.search(text):
            sys.exit(f"{path.name}: no block '<!-- generated: {name} ... -->' ... '<!-- end: {name} -->'")
        text = pat.sub(lambda m: m.group(1) + body + m.group(2), text)
    path.write_text(text)
    print(f"rewrote the generated parts of {path.relative_to(ROOT)}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("notebooks", nargs="*", help="notebook stems (default: all); e.g. 00_quickstart")
    ap.add_argument("--modes", nargs="+", choices=("workshop", "fast"), default=["workshop", "fast"])
    ap.add_argument("--write", action="store_true", help=f"rewrite the {SECTION[3:]!r} section of bench/RESULTS.md")
    ap.add_argument("--rows-only", action="store_true", help="measure nothing: only the table from the stored rows")
    ap.add_argument("--kit", action="store_true", help="print docs/workshop.md's generated parts (the methods' cheat "
                                                       "sheet, the exercises) and stop; with --write, rewrite them there")
    a = ap.parse_args(argv)
    if a.kit:
        parts = {"exercises": exercises_md(), "cheatsheet": cheatsheet(), "expected": expected_md()}
        print(parts["cheatsheet"] + "\n\n" + parts["exercises"])
        if a.write:
            write_kit(parts)
        return
    known = stems()
    bad = [s for s in a.notebooks if s not in known]
    if bad:
        sys.exit(f"unknown notebook(s) {', '.join(bad)}; allowed: {', '.join(known)}")
    if not a.rows_only:
        for stem in a.notebooks or known:
            measure(stem, tuple(a.modes))
    text = table()
    print(text)
    if a.write:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from results_md import replace_section

        replace_section("notebooks", text)
        print(f"wrote the {SECTION!r} section of bench/RESULTS.md")


if __name__ == "__main__":
    main()
