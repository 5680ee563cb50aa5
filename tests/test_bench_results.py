"""bench/RESULTS.md is written section by section, and the README's benchmark figures are generated from bench/results.

- every benchmark script rewrites only its own section of RESULTS.md (between its markers), on a temporary copy:
  the rest of the file stays byte for byte, including text planted in the other sections that no script wrote;
- a section missing from the file goes in its place in the order of ``results_md.SECTIONS``; an unmarked file
  (from before the markers) is converted one section at a time;
- ``bench/suite_time.py`` reads pytest's summary and ``time``'s output, and counts a real pytest run right;
- each README / RELIABILITY.md figure is rendered from its JSON in bench/results: changing the JSON makes
  ``readme_tables --check`` fail on exactly that figure, and regenerating changes only the text between its markers.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"


def _load(name: str):
    """A bench script as a module, loaded by path (``results_md`` under its own name: the scripts import it as
    ``from results_md import ...``, as when they run from bench/; bench/ itself is not put on sys.path)."""
    key = name if name == "results_md" else f"bench_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, BENCH / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[key] = mod
        spec.loader.exec_module(mod)
    return sys.modules[key]


rm = _load("results_md")
rt = _load("readme_tables")


def _live_out() -> dict:
    return {"threads": "1", "cpus": 2, "load_average": (0.5, 0.7),
            "in_process": [{"method": "dmd", "steps_per_frame": 1, "frame_ms": 60.0, "train_ms": 30.0,
                            "frame_data_ms": 10.0, "image_ms": 20.0, "plotly_figure_ms": 14.0, "updates_per_s": 16.4}]}


def _load_test_texts(lt) -> list[str]:
    found = [lt.result_path(s, c) for c in lt.CLIENTS for s in ("same", "distinct") if lt.result_path(s, c).exists()]
    assert found, "no bench/results/load_test_*.json"
    return [lt.table(json.loads(p.read_text())) for p in found]


#: section key -> how its script writes it into ``path`` (each script's own writer)
WRITERS = {
    "2d": lambda path: _load("run").write(path),
    "digits": lambda path: _load("digits").write(path),
    "kd": lambda path: _load("kd").write(path),
    "diswot": lambda path: _load("diswot_rank").write(path),
    "app-speed": lambda path: _load("app_speed").write(path),
    "load-test": lambda path: _load("load_test").write(_load_test_texts(_load("load_test")), path),
    "notebooks": lambda path: rm.replace_section("notebooks", _load("notebooks").table(), path),
    "live": lambda path: _load("live").write(_live_out(), path),
    "suite": lambda path: _load("suite_time").write(path),
    "particles": lambda path: _load("particles").write(path),
    "dd": lambda path: _load("dd").write(path),
    "lm": lambda path: _load("lm").write(path),
    "scaling": lambda path: _load("scaling").write(path),
}


def _planted(text: str, mark: str) -> str:
    """``text`` with a line that no script writes added at the end of every marked section."""
    for key in rm.sections(text):
        end = rm.end_marker(key)
        text = text.replace(end, f"{mark}-{key}\n\n{end}")
    return text


def test_every_section_has_a_writer_and_the_file_has_every_section():
    assert set(WRITERS) == set(rm.SECTIONS)
    text = rm.RESULTS_MD.read_text(encoding="utf-8")
    assert text.startswith(rm.TITLE + "\n")
    found = sorted(rm.sections(text), key=lambda k: text.index(rm.start_marker(k)))
    assert found == list(rm.SECTIONS), "RESULTS.md lacks a section or holds them out of order"


@pytest.mark.parametrize("key", list(rm.SECTIONS))
def test_writing_one_section_leaves_every_other_byte_unchanged(key, tmp_path, capsys):
    path = tmp_path / "RESULTS.md"
    old = _planted(rm.RESULTS_MD.read_text(encoding="utf-8"), "planted by the test")
    path.write_text(old, encoding="utf-8")
    WRITERS[key](path)
    new = path.read_text(encoding="utf-8")

    a, b = rm._marked_span(old, key)
    span = rm._marked_span(new, key)
    assert span, f"writing {key!r} dropped its markers (did the script rewrite the whole file?)"
    a2, b2 = span
    assert new[:a2] == old[:a] and new[b2:] == old[b:], f"writing {key!r} changed text outside its section"
    before, after = rm.sections(old), rm.sections(new)
    assert {k: v for k, v in after.items() if k != key} == {k: v for k, v in before.items() if k != key}
    for other in before:
        assert (f"planted by the test-{other}" in new) == (other != key)
    assert after[key].startswith(rm.start_marker(key) + "\n#") and after[key].endswith(rm.end_marker(key))

    path.write_text(new, encoding="utf-8")  # a second write of the same data is a no-op
    WRITERS[key](path)
    assert path.read_text(encoding="utf-8") == new
    capsys.readouterr()


def test_a_missing_section_goes_in_its_place_and_an_unmarked_file_is_converted(tmp_path):
    text = rm.RESULTS_MD.read_text(encoding="utf-8")
    a, b = rm._marked_span(text, "kd")
    without = text[:a] + text[b:].lstrip("\n")
    assert "kd" not in rm.sections(without)
    back = rm.with_section(without, "kd", "## KD again\n\nnew text\n")
    assert sorted(rm.sections(back), key=lambda k: back.index(rm.start_marker(k))) == list(rm.SECTIONS)
    assert "new text" in rm.sections(back)["kd"]

    # the file as it was before the markers: no marker lines; a section written then replaces its unmarked copy
    unmarked = "\n".join(line for line in text.splitlines() if not line.startswith("<!-- results:")) + "\n"
    digits_head = rm.SECTIONS["digits"][1][0]
    kd_head = rm.SECTIONS["kd"][1][0]
    converted = rm.with_section(unmarked, "digits", digits_head + "\n\nrewritten\n")
    assert list(rm.sections(converted)) == ["digits"]
    assert converted.count(digits_head) == 1 and "rewritten" in converted
    head, tail = unmarked.split(digits_head, 1)
    assert converted.startswith(head) and converted.endswith(tail[tail.index(kd_head):])

    with pytest.raises(ValueError, match="once each"):
        rm.with_section(text + "\n" + rm.start_marker("kd") + "\n", "kd", "## x\n")
    with pytest.raises(ValueError, match="unknown RESULTS.md section"):
        rm.with_section(text, "nope", "## x\n")
    with pytest.raises(ValueError, match="heading"):
        rm.with_section(text, "kd", "no heading\n")


def test_suite_time_reads_pytest_and_time_output():
    st = _load("suite_time")
    log = ("created: 2/2 workers\n2 workers [1322 items]\n...\n"
           "==== 3 failed, 1319 passed, 2 skipped, 1 error, 67 warnings in 696.30s (0:11:36) ====\nEXIT 1\n")
    r = st.parse_pytest(log)
    assert (r["passed"], r["failed"], r["skipped"], r["errors"], r["warnings"], r["workers"]) == (1319, 3, 2, 1, 67, 2)
    assert r["pytest_s"] == pytest.approx(696.30)
    assert st.parse_time("\nreal\t13m10.459s\nuser\t20m40.312s\n") == pytest.approx(790.459)
    assert st.parse_time("1.0user 0.1system 1:02:03.50elapsed") == pytest.approx(3723.5)
    assert st.minutes(696.3) == "11 min 36 s" and st.minutes(42) == "42 s"
    with pytest.raises(ValueError, match="summary"):
        st.parse_pytest("no summary here")


def test_suite_time_counts_a_real_pytest_run(tmp_path, capsys):
    """Control for the parser: a pytest run with known outcomes (3 pass, 1 fails) recorded through the script."""
    st = _load("suite_time")
    (tmp_path / "test_known.py").write_text(
        "import pytest\n\n@pytest.mark.parametrize('i', range(3))\ndef test_ok(i):\n    assert i >= 0\n\n"
        "def test_bad():\n    assert 1 == 2\n")
    out = tmp_path / "suite.json"
    rc = st.main(["--cmd", f"{sys.executable} -m pytest -q -p no:cacheprovider {tmp_path / 'test_known.py'}",
                  "--out", str(out)])
    rec = json.loads(out.read_text())
    assert rc == 1 and (rec["passed"], rec["failed"]) == (3, 1)
    assert 0 < rec["pytest_s"] <= rec["wall_s"] and rec["workers"] == 1
    capsys.readouterr()


def _copy_results(monkeypatch, tmp_path, module: str, attr: str) -> Path:
    """Point ``bench/<module>.py``'s ``attr`` (a results path) at a temporary copy, returned."""
    mod = rt.bench(module)
    src = getattr(mod, attr)
    dst = tmp_path / src.name
    (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    monkeypatch.setattr(mod, attr, dst)
    return dst


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _mutate_suite(mp, tmp):
    _edit(_copy_results(mp, tmp, "suite_time", "RESULTS"), lambda d: d.update(passed=1400))
    return "1,400"


def _mutate_2d(mp, tmp):
    d = _copy_results(mp, tmp, "run", "RESULTS")
    row = json.loads((d / "moons__reflow.json").read_text())
    k0 = min(row["native_nfe"])
    _edit(d / "moons__reflow.json", lambda r: r.update({f"swd@{k}": r["teacher_swd@50"] * (3.21 if k == k0 else 5.0)
                                                         for k in r["native_nfe"]}))
    return f"3.21x @{k0}"


def _mutate_digits_teacher(mp, tmp):
    d = _copy_results(mp, tmp, "digits", "RESULTS")
    _edit(d / "teacher.json", lambda r: r["nfe"]["2"].update(fd=7.77))
    return "FD 9.74 / 7.77"


def _mutate_digits_table(mp, tmp):
    d = _copy_results(mp, tmp, "digits", "RESULTS")
    fd50 = json.loads((d / "teacher.json").read_text())["nfe"]["50"]["fd"]
    _edit(d / "tscd.json", lambda r: r["nfe"]["2"].update(fd=fd50 * 7.5))
    return "| `tscd` | 7.50x @2"


def _mutate_kd(mp, tmp):
    d = _copy_results(mp, tmp, "kd", "SETTINGS_DIR")
    _edit(d / "all_labels.json", lambda r: [s.update({"last/acc": 0.5}) for s in r["scratch"]])
    return "`kd` beats scratch"


def _mutate_diswot(mp, tmp):
    _edit(_copy_results(mp, tmp, "diswot_rank", "RESULTS"), lambda r: r["tau"].update(diswot=0.93))
    return "τ 0.93"


def _mutate_dd(mp, tmp):
    _edit(_copy_results(mp, tmp, "dd", "RESULTS"), lambda r: r["accuracy"]["random real"]["1"].update(accs=[0.5] * 3))
    return "| random real images | 0.500 ± 0.000 |"


def _mutate_lm(mp, tmp):
    _edit(_copy_results(mp, tmp, "lm", "RESULTS"),
          lambda r: [x.update(alpha_after_mean=0.111) for x in r["osd"]["summary"] if x["run"] == "frozen"])
    return "frozen draft 0.111 ±"


MUTATIONS = {"suite-time": _mutate_suite, "suite-time-reliability": _mutate_suite, "bench-2d-summary": _mutate_2d,
             "bench-digits-teacher": _mutate_digits_teacher, "bench-digits-summary": _mutate_digits_table,
             "kd-all-labels": _mutate_kd, "diswot-tau": _mutate_diswot, "bench-dd-summary": _mutate_dd,
             "bench-lm-summary": _mutate_lm}
FIGURES = {f.key: f for f in rt.FIGURES}


def test_every_figure_has_a_control():
    assert set(MUTATIONS) == set(FIGURES)


@pytest.mark.parametrize("key", sorted(FIGURES))
def test_a_changed_result_makes_the_check_fail_on_that_figure_only(key, monkeypatch, tmp_path, capsys):
    fig = FIGURES[key]
    doc = ROOT / fig.doc
    text = doc.read_text(encoding="utf-8")
    assert rt.current(text, fig) == rt.render(fig), f"{fig.doc}'s {key} is out of date; run: python bench/readme_tables.py"
    assert rt.stale(text, doc=fig.doc) == []

    expected = MUTATIONS[key](monkeypatch, tmp_path)
    assert rt.stale(text, doc=fig.doc) == [key]
    flag = "--readme" if fig.doc == "README.md" else "--reliability"
    assert rt.main(["--check", flag, str(doc)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and key in err

    copy = tmp_path / fig.doc
    copy.write_text(text, encoding="utf-8")
    assert rt.main([flag, str(copy)]) == 0 and rt.main(["--check", flag, str(copy)]) == 0
    fixed = copy.read_text(encoding="utf-8")
    assert expected in rt.current(fixed, fig)
    assert fixed.replace(rt.current(fixed, fig), "") == text.replace(rt.current(text, fig), "")
    capsys.readouterr()


def test_a_missing_result_is_named_in_the_check(monkeypatch, tmp_path, capsys):
    st = rt.bench("suite_time")
    monkeypatch.setattr(st, "RESULTS", tmp_path / "suite.json")
    assert set(rt.stale(rt.README.read_text(encoding="utf-8"))) == {"suite-time"}
    assert rt.main(["--check", "--readme", str(rt.README)]) == 1
    assert "python bench/suite_time.py" in capsys.readouterr().err


def test_diswot_bench_reads_the_candidate_set_it_is_pointed_at():
    dr = _load("diswot_rank")
    from lab.kd import diswot

    assert dr.load_candidates("lab.kd.diswot:default_candidates", "digits") == diswot.default_candidates("digits")
    with pytest.raises(SystemExit, match="module:name"):
        dr.load_candidates("lab.kd.diswot", "digits")
