"""Claims of the feature/relation KD methods at toy scale, each against ``scratch`` (the same student,
steps, batch and seeds, cross-entropy only) measured in the same test.

Where a paper's accuracy claim does not hold here the test asserts what does (a CKA property of
the distilled layer) and is named for it."""
from __future__ import annotations

import statistics

import pytest

import lab
from lab.kd.feature.base import feature_cka

pytestmark = pytest.mark.claim

DIGITS = "kd/digits/teacher"


def trained(name, cfg, seeds, task="digits"):
    out = []
    for s in seeds:
        m = lab.kd.get(name)(None if name == "scratch" else f"kd/{task}/teacher", task, cfg, seed=s)
        for _ in lab.train(m):
            pass
        out.append(m)
    return out


def mean_last(ms, metric="acc"):
    return statistics.mean(m.history[-1][metric] for m in ms)


def vs_scratch(name, seeds, task="digits", cfg=None):
    cls = lab.kd.get(name)
    cfg = {**cls.bench_config, **(cfg or {})}
    base = {k: v for k, v in cfg.items() if k in ("steps", "batch", "n_train", "student", "lr", "augment")}
    return trained(name, cfg, seeds, task), trained("scratch", base, seeds, task)


def test_vkd_beats_scratch_with_200_labels():
    m, s = vs_scratch("vkd", [0, 1])
    assert mean_last(m) > mean_last(s) + 0.005, (mean_last(m), mean_last(s))


def test_fitnets_one_stage_beats_scratch_with_200_labels():
    m, s = vs_scratch("fitnets", [0, 1, 2])
    assert m[0].config.stages == "one"
    assert mean_last(m) > mean_last(s) + 0.005, (mean_last(m), mean_last(s))


def test_fitnets_hint_stage_makes_the_guided_layer_more_cka_similar_to_the_hint_layer():
    """Two-stage FitNets does not beat scratch here (see the module docstring of lab.kd.feature.fitnets); what
    its hint stage does measurably: after it, the student's guided layer (fc1) is closer in linear CKA to
    the teacher's hint layer (pool) on the test digits than the same layer of a scratch student."""
    seeds = [0, 1]
    fit = trained("fitnets", {"steps": 301, "n_train": 200, "teacher_layer": "pool", "stages": "two",
                              "hint_steps": 300}, seeds)
    scr = trained("scratch", {"steps": 300, "n_train": 200}, seeds)
    task = lab.kd.get_task("digits")
    teacher = fit[0].teacher
    c_fit = statistics.mean(feature_cka(m.student, teacher, task.x_test, "fc1", "pool") for m in fit)
    c_scr = statistics.mean(feature_cka(m.student, teacher, task.x_test, "fc1", "pool") for m in scr)
    assert c_fit > c_scr + 0.01, (c_fit, c_scr)


def cka(ms, s_layer, t_layer):
    task = lab.kd.get_task("digits")
    teacher = lab.kd.load_teacher(DIGITS)
    return statistics.mean(feature_cka(m.student, teacher, task.x_test, s_layer, t_layer) for m in ms)


def test_ofa_cnn_to_vit_beats_scratch_with_200_labels():
    """The heterogeneous pair: CNN teacher -> TinyViT student (dim 16, depth 2)."""
    m, s = vs_scratch("ofa", [0, 1])
    assert m[0].student.spec()["type"] == "clf_vit" and m[0].teacher.spec()["type"] == "clf_cnn"
    assert mean_last(m) > mean_last(s) + 0.01, (mean_last(m), mean_last(s))


def test_at_makes_the_cnn_student_conv_features_more_cka_similar_to_the_teacher():
    """AT does not reliably beat scratch in accuracy here (CNN[4, 8] student, 200 labels: about +0.01 with
    a seed spread of 0.15); what it does measurably: the student's conv maps are closer in linear CKA to
    the teacher's paired conv maps on the test digits than a scratch student's."""
    m, s = vs_scratch("at", [0, 1])
    for layer in ("conv1", "conv2"):
        assert cka(m, layer, layer) > cka(s, layer, layer) + 0.03, layer


def test_rkd_makes_the_student_embedding_more_cka_similar_to_the_teacher():
    """RKD (CE + distance + angle) does not beat scratch in accuracy with 200 labels (0.825 vs 0.844);
    the relational losses do make the student's penultimate embedding (fc1) closer in linear CKA to the
    teacher's (pool) on the test digits."""
    m, s = vs_scratch("rkd", [0, 1], cfg={"steps": 500})
    assert cka(m, "fc1", "pool") > cka(s, "fc1", "pool") + 0.05


def test_minilm_lowers_kl_to_the_true_language_below_scratch():
    m, s = vs_scratch("minilm", [0, 1], task="language")
    assert mean_last(m, "kl_truth") < mean_last(s, "kl_truth") - 0.005, (mean_last(m, "kl_truth"),
                                                                          mean_last(s, "kl_truth"))
