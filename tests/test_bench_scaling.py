"""bench/scaling.py (issue 18 part 3): each table is rebuilt from its JSON, and each measurement computes what it says.

No timed assertions (the speed goals live in bench/RESULTS.md): these tests check the arithmetic and the
baselines the benchmark compares against:

- speed-up: the ideal ratio is the NFE ratio, the fraction is speed-up / ideal, and every row's NFE is what the
  sampler really spent;
- diffusers: lab's sampler and the exported pipeline give the same images at the exported NFE;
- overhead: the bare PyTorch loop computes the same loss as TeacherTraining.step on the same batch (the baseline
  is the same work);
- scaling: the log-log fit recovers a known power law, the extrapolation multiplies the axes, and a step's counted
  FLOPs double with the batch;
- CKA: lab's feature-space CKA equals the naive n x n Gram version (both estimators, and cka_matrix);
- KD: the expected ratio is (scratch + teacher forward) / scratch, and the methods left out are those without
  a classification kind;
- every table goes from the JSON in bench/results to its RESULTS.md section through results_md.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    key = name if name == "results_md" else f"bench_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, ROOT / "bench" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[key] = mod
        spec.loader.exec_module(mod)
    return sys.modules[key]


sc = _load("scaling")
rm = _load("results_md")


def test_speed_fraction_is_speedup_over_the_nfe_ratio_and_rows_spend_their_nfe():
    f = sc.speed_fraction(2.0, 0.1, 50, 4)
    assert f["speedup"] == pytest.approx(20.0) and f["ideal"] == pytest.approx(12.5)
    assert f["fraction"] == pytest.approx(1.6)
    import lab

    g = lab.zoo.load("toy2d/8gaussians/consistency", train_if_missing=False, progress=False)
    for nfe in sc.STUDENT_NFES:  # the table's NFE column is what the sampler really evaluates
        assert g.sample(n=16, nfe=nfe, seed=0).nfe == nfe
    data = json.loads(sc.result_path("speedup").read_text())
    for r in data["rows"]:
        tt = data["teachers"][r["teacher"]]["median_s"]
        assert r["ideal"] == pytest.approx(data["teacher_nfe"] / r["nfe"])
        assert r["fraction"] == pytest.approx(tt / r["median_s"] / r["ideal"])
        assert r["median_s"] == pytest.approx(float(np.median(r["times_s"]))) and len(r["times_s"]) >= 5


def test_lab_sampler_and_diffusers_pipeline_agree_and_the_ratio_is_of_medians():
    d = sc.run_diffusers(reps=5, n=2, nfes=(2,))
    (r,) = d["rows"]
    assert r["max_abs_diff"] < 1e-4, r["max_abs_diff"]
    assert r["ratio"] == pytest.approx(np.median(r["lab_s"]) / np.median(r["diffusers_s"]))
    assert len(r["lab_s"]) == len(r["diffusers_s"]) == 5
    assert "| 2 |" in sc.table_diffusers(d)


def test_bare_teacher_loop_computes_the_same_loss_as_teacher_training():
    from lab.diffusion.train import TeacherTraining

    tr = TeacherTraining("digits", {"steps": 3, "batch": 8, "conditional": True}, seed=3)
    b = tr.sample_batch(0)
    bare = sc.bare_teacher_loss(tr.net, b["x0"], b["y"], b["eps"], b["t"]).item()
    lab_loss = tr.step(b, 0).losses["denoise"]
    assert bare == pytest.approx(lab_loss, rel=1e-5)
    assert bare != pytest.approx(sc.bare_teacher_loss(tr.net, b["x0"], b["y"], b["eps"], b["t"].flip(0)).item(),
                                 rel=1e-3)  # the loss does depend on the batch's times


def test_power_fit_recovers_a_known_law_and_a_steps_flops_double_with_the_batch(tmp_path):
    xs = np.array([8, 16, 32, 64, 128.0])
    noise = np.random.default_rng(0).normal(0, 0.01, xs.size)
    f = sc.fit_power(xs, 3e-4 * xs ** 1.7 * np.exp(noise))
    assert f["exponent"] == pytest.approx(1.7, abs=0.03) and f["prefactor"] == pytest.approx(3e-4, rel=0.1)
    assert f["r2"] > 0.99
    fits = {"batch": {"exponent": 1.0}, "size": {"exponent": 2.0}}
    base, target = {"batch": 32, "size": 8}, {"batch": 128, "size": 32}
    assert sc.extrapolate(fits, base, 0.1, target) == pytest.approx(0.1 * 4 * 16)
    small = sc.measure_point("teacher", {**sc.BASE_POINT, "batch": 4, "width": 8}, tmp_path, steps=1, warmup=0)
    big = sc.measure_point("teacher", {**sc.BASE_POINT, "batch": 8, "width": 8}, tmp_path, steps=1, warmup=0)
    assert big["flops"] / small["flops"] == pytest.approx(2.0, rel=0.05)
    assert big["params"] == small["params"] and big["ops"] == small["ops"]


@pytest.mark.parametrize("seed", [0, 1])
def test_feature_space_cka_equals_the_naive_gram_version(seed):
    from lab.metrics.similarity import cka_matrix, linear_cka

    x, y = sc.cka_data(300, 40, seed=seed)
    for deb in (False, True):
        assert linear_cka(x, y, debiased=deb) == pytest.approx(sc.naive_linear_cka(x, y, debiased=deb), abs=1e-10)
    feats = {"a": x, "b": y, "c": x[:, :7]}
    m = cka_matrix(feats, feats).to_numpy()
    naive = np.array([[sc.naive_linear_cka(feats[a], feats[b]) for b in feats] for a in feats])
    assert np.allclose(m, naive, atol=1e-10)
    other = {"y": y, "x": torch.as_tensor(x)}  # distinct objects, a tensor among them: no sharing between the sides
    assert np.allclose(cka_matrix(feats, other, debiased=True).to_numpy(),
                       [[sc.naive_linear_cka(feats[a], np.asarray(other[b]), debiased=True) for b in other]
                        for a in feats], atol=1e-10)
    assert not np.allclose(m, 1.0)  # distinct layers: a table of ones would pass a vacuous check


def test_kd_expected_ratio_and_the_methods_left_out():
    import lab

    d = json.loads(sc.result_path("kd").read_text())
    for r in d["rows"]:
        base = d["scratch"][r["scratch_key"]]
        assert r["scratch_step_s"] == base["step_median_s"]
        # the baseline is scratch training of this method's own student at its batch and subset
        cfg = lab.kd.get(r["method"]).Config(**{**json.loads(r["scratch_key"])}).__dict__
        assert all(cfg[k] == v for k, v in base["config"].items())
        extra = d["teacher_forward_s"] if r["needs_teacher"] else 0.0
        assert r["expected_ratio"] == pytest.approx((r["students"] * r["scratch_step_s"] + extra) / r["scratch_step_s"])
        assert r["students"] == (2 if r["method"] == "dml" else 1)
        assert r["ratio"] == pytest.approx(r["step_median_s"] / r["scratch_step_s"])
        assert r["needs_teacher"] == lab.kd.get(r["method"]).needs_teacher
    kind = lab.kd.get_task("digits").kind
    assert set(d["skipped"]) == {m for m in lab.kd.list_methods() if kind not in lab.kd.get(m).kinds}
    assert {r["method"] for r in d["rows"]} | set(d["skipped"]) | {"scratch"} == set(lab.kd.list_methods())


def test_every_table_goes_from_its_json_to_the_results_section(tmp_path):
    results = sc.load_results()
    assert set(results) == set(sc.NAMES), f"missing bench/results/scaling_*.json: {set(sc.NAMES) - set(results)}"
    path = tmp_path / "RESULTS.md"
    path.write_text(rm.RESULTS_MD.read_text(encoding="utf-8"), encoding="utf-8")
    sc.write(path)
    sec = rm.sections(path.read_text(encoding="utf-8"))[sc.KEY]
    assert sec == rm.sections(rm.RESULTS_MD.read_text(encoding="utf-8"))[sc.KEY], "RESULTS.md is stale: run --write"
    sp = results["speedup"]["rows"][0]
    assert f"| {sp['student']} | {sp['kind']} | {sp['nfe']} |" in sec and f"{sp['fraction']:.2f} |" in sec
    changed = copy.deepcopy(results)
    changed["cka"]["rows"][0]["naive_median_s"] *= 10
    assert sc.section(changed) != sc.section(results)  # a figure in the JSON moves the text
    for name, d in results.items():
        assert d["machine"]["cpu"] in sec and len(d["machine"]["load_average_end"]) == 3
