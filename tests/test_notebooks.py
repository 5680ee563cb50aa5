"""The workshop curriculum (issue 15): notebooks/NN_*.ipynb, their py:percent twins, checked exercises, solutions.

Read-only checks (fast): each notebook and its jupytext ``py:percent`` twin agree; notebooks are committed without
outputs, kernelspec ``python3``; each opens with ``# NN · Title`` and 3-4 numbered learning goals and closes with a
``## Recap``; a code cell tagged "parameters" holds ``FAST = False``; it asserts something it measured (``assert``
with a message); its 2-4 exercises (``### Exercise NN.k``) are exactly those registered in ``notebooks/workshop``
(``workshop.exercises_of(stem)``), each stating ``**Find:**`` and, after ``**Check:**``, its registered check text;
its solutions file covers every exercise; its app links (``http://localhost:8501/Page?param=...``) name a page and
parameters that page reads. Every registered method (``lab.list_methods()``, ``lab.kd.list_methods()`` minus the
``scratch`` baseline, and DisWOT) appears by its registry name in a code cell of some notebook. docs/workshop.md
covers every notebook and every method.

Executed (marker ``notebook``, one test per notebook): a fresh ``python3`` kernel in notebooks/ (it must be this
virtualenv's Python; if not: ``.venv/bin/python -m ipykernel install --sys-prefix``) runs the notebook with
``FAST = True`` injected after its parameters cell, every cell including the learners' unfinished exercise cells
(they must run and print "✗ not yet", never raise), then the code cells of ``notebooks/solutions/<stem>.py`` in the
same kernel. Each exercise must NOT have passed after the notebook alone (a check the starting cell already meets
checks nothing) and must have passed after the solutions (``workshop.PASSED``). What the checks recorded
(``workshop.MEASURED``, the values of each exercise's last check) is asserted too: after the notebook alone every
exercise's check was called, on the learner's starting values (so "not yet" came from the check, not from a cell
that never reached it); after the solutions every exercise holds new values, each number finite, none left at the
starting cell's None, and these recorded values pass the exercise's predicate again in the test process. The
engine is bench/notebooks.py's ``execute``, which ``python bench/notebooks.py`` also uses to time the notebooks.
"""
from __future__ import annotations

import ast
import difflib
import importlib.util
import math
import re
import sys
import urllib.parse
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
DOC = ROOT / "docs" / "workshop.md"
PAGES = ROOT / "app" / "pages"
APP_URL = "http://localhost:8501"

_spec = importlib.util.spec_from_file_location("bench_notebooks", ROOT / "bench" / "notebooks.py")
nbrun = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nbrun)

if str(NB_DIR) not in sys.path:
    sys.path.insert(0, str(NB_DIR))
import workshop  # noqa: E402  (notebooks/workshop: the exercises' checks)

pytestmark = pytest.mark.notebook

STEMS = nbrun.stems()
EXERCISE = re.compile(r"^###\s+Exercise\s+(\d\d\.\d+)\b")
SOLUTION = re.compile(r"\bSolution\s+(\d\d\.\d+)\b")
LINK = re.compile(re.escape(APP_URL) + r"/?([A-Za-z_]*)(\?[^\s)\]>\"'`]*)?")


def _norm(text: str) -> str:
    return " ".join(text.split())


def _nb(stem: str):
    if not (NB_DIR / f"{stem}.ipynb").exists():
        pytest.fail(f"{stem}: no notebooks/{stem}.ipynb (write it from its twin: "
                    f"`.venv/bin/jupytext --sync notebooks/{stem}.py`)", pytrace=False)
    return nbrun.read(stem)


def _code(source: str) -> str:
    """A code cell's source without IPython magics and shell lines (so ast can parse it). Only lines starting at
    column 0: an indented "% (a, b)" is a Python continuation line, not a magic."""
    return "\n".join("" if line.startswith(("%", "!")) else line for line in source.splitlines())


def _trees(nb) -> list[ast.AST]:
    out = []
    for c in nb.cells:
        if c.cell_type == "code":
            try:
                out.append(ast.parse(_code(c.source)))
            except SyntaxError:
                pass
    return out


def _exercise_cells(nb) -> list[tuple[str, str]]:
    """(id, its markdown from the heading "### Exercise NN.k" to the next heading of the same cell) of each exercise."""
    out = []
    for c in nb.cells:
        if c.cell_type == "markdown":
            for part in re.split(r"(?m)^(?=#{1,3}\s)", c.source):
                m = EXERCISE.match(part)
                if m:
                    out.append((m.group(1), part))
    return out


def _solution_gaps(stem: str) -> list[str]:
    """What the solutions file lacks: one line per exercise without a "Solution NN.k" cell or a check call."""
    path = nbrun.solution_path(stem)
    ids = [e.id for e in workshop.exercises_of(stem)]
    if not path.exists():
        return [f"{stem}: no solutions file {path.relative_to(ROOT)} (exercises {', '.join(ids) or 'none'})"]
    cells = nbrun.solution_cells(stem)
    md = {m for c in cells if c.cell_type == "markdown" for m in SOLUTION.findall(c.source)}
    called = {m for c in cells if c.cell_type == "code"
              for m in re.findall(r"check\(\s*[\"'](\d\d\.\d+)[\"']", c.source)}
    gaps = []
    for i in ids:
        lacks = ([f"a markdown cell 'Solution {i}'"] if i not in md else []) + \
                ([f"a code cell calling workshop.check({i!r}, ...)"] if i not in called else [])
        if lacks:
            gaps.append(f"{stem}: exercise {i} has no solution in {path.relative_to(ROOT)} (no {' and no '.join(lacks)})")
    return gaps


# ------------------------------------------------------------------------------------------------ the files
def test_curriculum_is_numbered():
    assert STEMS, f"no notebooks in {NB_DIR}"
    numbers = [int(s[:2]) for s in STEMS]
    dup = sorted({n for n in numbers if numbers.count(n) > 1})
    assert not dup, f"two notebooks share the number(s) {dup}: {STEMS}"
    assert numbers == list(range(len(numbers))), f"the notebooks are not numbered 00, 01, ... without gaps: {STEMS}"
    assert len(STEMS) == 13, (f"the curriculum has 13 notebooks (00-10, issue 15; 11 dataset distillation and 12 language models, issue 17); found {len(STEMS)}: {STEMS}")


@pytest.mark.parametrize("stem", STEMS)
def test_text_twin_agrees(stem):
    import jupytext

    ipynb, py = NB_DIR / f"{stem}.ipynb", NB_DIR / f"{stem}.py"
    assert ipynb.exists() and py.exists(), (
        f"{stem}: needs both {stem}.ipynb and its py:percent twin {stem}.py; found only "
        f"{(ipynb if ipynb.exists() else py).name} (pair them: `jupytext --set-formats ipynb,py:percent` and "
        f"`.venv/bin/jupytext --sync notebooks/{stem}.py`)")
    assert "py:percent" in str(jupytext.read(py).metadata.get("jupytext", {}).get("formats", "")), \
        f"{py.name}: its header must pair it, `formats: ipynb,py:percent`"

    def drop_version(text: str) -> list[str]:
        return [line for line in text.splitlines() if "jupytext_version:" not in line]

    want = drop_version(jupytext.writes(jupytext.read(ipynb), fmt="py:percent"))
    have = drop_version(py.read_text())
    diff = list(difflib.unified_diff(have, want, f"{stem}.py", f"{stem}.ipynb as py:percent", lineterm="", n=1))
    assert not diff, (f"{stem}.ipynb and {stem}.py disagree (run `.venv/bin/jupytext --sync notebooks/{stem}.py` "
                      f"after editing the .py):\n" + "\n".join(diff[:40]))


@pytest.mark.parametrize("stem", STEMS)
def test_committed_without_outputs(stem):
    import nbformat

    nb = _nb(stem)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{stem}.ipynb: code cells {dirty} have outputs or execution counts; clear them " \
                      f"(`.venv/bin/jupytext --sync notebooks/{stem}.py` writes them without)"
    assert nb.metadata.get("kernelspec", {}).get("name") == nbrun.KERNEL, \
        f"{stem}.ipynb: kernelspec must be {nbrun.KERNEL!r}"


@pytest.mark.parametrize("stem", STEMS)
def test_goals_recap_parameters_and_a_fact(stem):
    nb = _nb(stem)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and re.match(rf"#\s+{stem[:2]}\s+·\s+\S", first.source.lstrip()), \
        f"{stem}: the first cell must be markdown starting '# {stem[:2]} · Title'"
    assert "**Learning goals.**" in first.source, f"{stem}: the first cell must state '**Learning goals.**'"
    goals_text = first.source.split("**Learning goals.**", 1)[1].split("**In the app:**")[0]
    goals = re.findall(r"^\s*\d+\.\s+\S", goals_text, flags=re.M)
    assert 3 <= len(goals) <= 4, f"{stem}: 3 or 4 numbered learning goals after '**Learning goals.**'; found {len(goals)}"
    md = [c for c in nb.cells if c.cell_type == "markdown"]
    last = md[-1].source.lstrip()
    assert last.startswith("## Recap"), f"{stem}: the last markdown cell must be '## Recap' (it starts {last[:40]!r})"
    bullets = re.findall(r"^\s*[-*]\s+\S", last, flags=re.M)
    assert 3 <= len(bullets) <= 5, f"{stem}: the recap has 3 to 5 bullets; found {len(bullets)}"

    i = nbrun.parameters_index(nb)
    assert i is not None, f"{stem}: no code cell tagged 'parameters' (`# %% tags=[\"parameters\"]` holding FAST = False)"
    sets_fast = [n for n in ast.walk(ast.parse(_code(nb.cells[i].source))) if isinstance(n, ast.Assign)
                 and any(isinstance(t, ast.Name) and t.id == "FAST" for t in n.targets)
                 and isinstance(n.value, ast.Constant) and n.value.value is False]
    assert sets_fast, f"{stem}: the parameters cell must hold `FAST = False`; it holds:\n{nb.cells[i].source}"

    facts = [n for t in _trees(nb) for n in ast.walk(t) if isinstance(n, ast.Assert) and n.msg is not None]
    assert facts, f"{stem}: no cell asserts a fact it teaches (`assert measured_a < measured_b, \"what it shows\"`)"


@pytest.mark.parametrize("stem", STEMS)
def test_exercises_match_their_checks(stem):
    nb = _nb(stem)
    found = _exercise_cells(nb)
    ids = [i for i, _ in found]
    registered = {e.id: e for e in workshop.exercises_of(stem)}
    assert 2 <= len(ids) <= 4, f"{stem}: 2 to 4 exercises ('### Exercise {stem[:2]}.k: title'); found {ids}"
    assert all(i.startswith(stem[:2] + ".") for i in ids), f"{stem}: exercise ids must start with {stem[:2]}.: {ids}"
    assert len(set(ids)) == len(ids), f"{stem}: an exercise id appears twice: {ids}"
    assert sorted(ids) == sorted(registered), (
        f"{stem}: the notebook's exercises {sorted(ids)} are not the ones registered for it in "
        f"notebooks/workshop/checks_{stem[:2]}.py {sorted(registered)}")
    for i, text in found:
        assert "**Find:**" in text, f"{stem}: exercise {i} must state what to find after '**Find:**'"
        assert "**Check:**" in text, f"{stem}: exercise {i} must state its check after '**Check:**'"
        after = _norm(text.split("**Check:**", 1)[1])
        assert _norm(registered[i].check) in after, (
            f"{stem}: exercise {i}'s '**Check:**' must state the registered check text verbatim:\n"
            f"  registered: {registered[i].check!r}\n  notebook:   {after[:300]!r}")
    calls = {m for c in nb.cells if c.cell_type == "code" for m in re.findall(r"check\(\s*[\"'](\d\d\.\d+)[\"']", c.source)}
    missing = [i for i in ids if i not in calls]
    assert not missing, f"{stem}: exercises {missing} have no code cell ending with workshop.check({missing[0]!r}, ...)"


@pytest.mark.parametrize("stem", STEMS)
def test_solutions_cover_every_exercise(stem):
    gaps = _solution_gaps(stem)
    assert not gaps, "\n".join(gaps)


def _taught_names() -> set[str]:
    """Every string constant (and its '/'- or ':'-separated parts) and every name in the notebooks' code cells."""
    import jupytext

    out: set[str] = set()
    for stem in STEMS:
        ipynb = NB_DIR / f"{stem}.ipynb"
        out |= nbrun.code_words(jupytext.read(ipynb if ipynb.exists() else NB_DIR / f"{stem}.py"))
    return out


def test_every_method_is_taught():
    import lab
    import lab.kd

    names = set(lab.list_methods()) | (set(lab.kd.list_methods()) - {"scratch"}) | {"diswot"}
    missing = sorted(names - _taught_names())
    assert not missing, (f"registered methods that no notebook's code cell names (lab.get_method('...'), "
                         f"lab.kd.get('...'), a zoo entry, or lab.kd.diswot): {', '.join(missing)}")


# ------------------------------------------------------------------------------------------------ app links
def _page_params() -> dict[str, set[str]]:
    """page path ('' for Home) -> the URL parameters it reads (its ``url.<widget>(..., key=, param=)`` calls: param,
    else key; an f-string param counts by its constant prefix, e.g. 'hp.'), read with ast."""
    out = {"": set()}
    for f in sorted(PAGES.glob("*.py")):
        params: set[str] = set()
        for n in ast.walk(ast.parse(f.read_text())):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and isinstance(n.func.value, ast.Name) \
                    and n.func.value.id == "url":
                kw = {k.arg: k.value for k in n.keywords}
                v = kw.get("param", kw.get("key"))
                if isinstance(v, ast.Constant) and isinstance(v.value, str):
                    params.add(v.value)
                elif isinstance(v, ast.JoinedStr) and v.values and isinstance(v.values[0], ast.Constant):
                    params.add(v.values[0].value + "*")
            elif isinstance(n, ast.Subscript) and isinstance(n.value, ast.Attribute) and n.value.attr == "query_params" \
                    and isinstance(n.slice, ast.Constant):
                params.add(n.slice.value)
        out[re.sub(r"^\d+_", "", f.stem)] = params
    return out


def _link_problems(text: str, where: str) -> list[str]:
    import lab
    import lab.zoo
    from lab.data import toy2d
    from lab.runs import live_kd

    pages, entries = _page_params(), set(lab.zoo.entries())
    problems = []
    for m in LINK.finditer(text):
        page, query = m.group(1), urllib.parse.parse_qs((m.group(2) or "?")[1:], keep_blank_values=True)
        if page not in pages:
            problems.append(f"{where}: {m.group(0)}: no page {page!r}; allowed: {', '.join(p for p in pages if p)}")
            continue
        allowed = pages[page]
        for name, values in query.items():
            if name not in allowed and not any(a.endswith("*") and name.startswith(a[:-1]) for a in allowed):
                problems.append(f"{where}: {m.group(0)}: the {page or 'Home'} page reads no parameter {name!r}; "
                                f"allowed: {', '.join(sorted(allowed))}")
        dist = query.get("dist", ["8gaussians"])[0]
        for v in query.get("dist", []):
            if v not in toy2d.names():
                problems.append(f"{where}: {m.group(0)}: dist={v!r} is not one of {', '.join(toy2d.names())}")
        for v in query.get("students", []):
            entry = f"digits/{v}" if page == "Digits" else f"toy2d/{dist}/{v}"
            if entry not in entries:
                problems.append(f"{where}: {m.group(0)}: no zoo student {entry}")
        for v in query.get("method", []):
            if page not in ("Knowledge_distillation", "Distill_live"):
                continue
            ok = [k for k in live_kd.methods_for(query.get("task", ["digits"])[0]) if k != "scratch"] \
                if page == "Knowledge_distillation" else lab.list_methods()
            if v not in ok:
                problems.append(f"{where}: {m.group(0)}: method={v!r} is not one of {', '.join(ok)}")
    return problems


@pytest.mark.parametrize("stem", STEMS)
def test_app_links_open_a_real_view(stem):
    first = _nb(stem).cells[0].source
    assert "**In the app:**" in first and APP_URL in first, \
        f"{stem}: the first cell needs a line '**In the app:**' with links ({APP_URL}/Page?param=...)"
    problems = _link_problems("\n".join(c.source for c in _nb(stem).cells if c.cell_type == "markdown"), stem)
    assert not problems, "\n".join(problems)


def test_facilitator_kit():
    """docs/workshop.md: every notebook, every registered method in the cheat sheet, app links that are real."""
    import lab
    import lab.kd

    assert DOC.exists(), f"no facilitator's kit at {DOC.relative_to(ROOT)}"
    text = DOC.read_text()
    missing = [s for s in STEMS if s not in text]
    assert not missing, f"docs/workshop.md does not mention the notebooks {missing}"
    names = set(lab.list_methods()) | set(lab.kd.list_methods()) | {"diswot"}
    sheet = text.split("## Cheat sheet", 1)[-1]
    absent = sorted(n for n in names if f"`{n}`" not in sheet)
    assert not absent, f"docs/workshop.md's cheat sheet does not list {absent} (as `name`)"
    ids = [e.id for s in STEMS for e in workshop.exercises_of(s)]
    gone = [i for i in ids if f"**{i}**" not in text]
    assert not gone, f"docs/workshop.md does not list the exercises {gone} (regenerate: python bench/notebooks.py --kit)"
    problems = _link_problems(text, "docs/workshop.md")
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------------------------------ executed
@pytest.mark.parametrize("stem", STEMS)
def test_notebook_and_its_solutions_run(stem, monkeypatch):
    _nb(stem)
    gaps = _solution_gaps(stem)
    assert not gaps, "\n".join(gaps)
    ids = [e.id for e in workshop.exercises_of(stem)]
    assert ids, f"{stem}: no exercises registered for it (notebooks/workshop/checks_{stem[:2]}.py)"
    monkeypatch.setenv("LAB_NUM_THREADS", "1")
    # execute() reads workshop.PASSED after the notebook and again after the solutions: read MEASURED with it
    recorded = []
    passed = nbrun._passed

    def passed_and_measured(client, nb):
        recorded.append(nbrun._measured(client, nb))
        return passed(client, nb)

    monkeypatch.setattr(nbrun, "_passed", passed_and_measured)
    try:
        r = nbrun.execute(stem, fast=True, solutions=True)
    except nbrun.NotebookFailed as e:
        pytest.fail(str(e), pytrace=False)
    assert len(recorded) == 2, f"execute() read workshop.PASSED {len(recorded)} times, expected 2 (notebook, solutions)"
    print(f"{stem}: kernel {r['t_kernel']:.1f} s, notebook (FAST) {r['t_notebook']:.1f} s, "
          f"solutions {r['t_solutions']:.1f} s; slowest: "
          + "; ".join(f"{s['s']:.1f} s {s['where']} {s['cell']}" for s in r["slowest"]))
    early = [i for i in ids if i in r["passed_before"]]
    assert not early, (f"{stem}: exercise(s) {early} already pass before their solution ran: the learner's "
                       f"starting cell must not meet the check (else the check cannot tell a solved exercise)")
    unsolved = [i for i in ids if i not in r["passed"]]
    assert not unsolved, (f"{stem}: after notebooks/solutions/{stem}.py ran, exercise(s) {unsolved} have not "
                          f"passed their check (workshop.PASSED = {r['passed']})")

    before, after = recorded
    assert after == r["measured"]
    unchecked = [i for i in ids if i not in before]
    assert not unchecked, (f"{stem}: the notebook alone never called workshop.check for exercise(s) {unchecked}: "
                           f"its exercise cell must end with the check on the learner's starting values")
    for i in ids:
        assert after[i] != before[i], f"{stem}: exercise {i}: the solutions recorded the starting values {before[i]}"
        left = [k for k, v in after[i].items() if v == "None"]
        assert not left, f"{stem}: exercise {i}: after the solutions {left} are still None"
        bad = [k for k, v in after[i].items() if isinstance(v, float) and not math.isfinite(v)]
        assert not bad, f"{stem}: exercise {i}: non-finite values {bad}: {after[i]}"
        values = {k: _literal(v) for k, v in after[i].items()}
        assert workshop.EXERCISES[i].predicate(**values), \
            f"{stem}: exercise {i}: its last recorded values fail its check in the test process: {after[i]}"


def _literal(v):
    """A value as workshop.MEASURED records it (a float, or the str of anything else) back to a Python value."""
    if not isinstance(v, str):
        return v
    try:
        return ast.literal_eval(v)
    except (ValueError, SyntaxError):
        return v
