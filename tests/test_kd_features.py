"""Unit tests of the feature/relation KD methods (fitnets, at, vkd, rkd, ofa, minilm): layer-name
validation, the losses' zeros and invariances, attention pooling shapes, MiniLM's head check."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import lab
from lab.errors import LabError
from lab.kd.feature.at import CNN_STUDENT, at_loss, at_vector, attention_map
from lab.kd.feature.base import middle_layer, penultimate_layer, run_with_features
from lab.kd.feature.fitnets import hint_loss
from lab.kd.feature.minilm import attention_kl, value_relation_kl
from lab.kd.feature.ofa import VIT_STUDENT, ofa_loss
from lab.kd.feature.rkd import rkd_angle_loss, rkd_distance_loss
from lab.kd.feature.vkd import vkd_loss
from lab.nets.classifiers import build_classifier

TEACHER = "kd/digits/teacher"


def make(name, cfg=None, task="digits", teacher=TEACHER, seed=0):
    return lab.kd.get(name)(teacher, task, {"steps": 4, "batch": 16, **(cfg or {})}, seed=seed)


# -- layer names ----------------------------------------------------------------------------
@pytest.mark.parametrize("name,field", [("fitnets", "student_layer"), ("fitnets", "teacher_layer"),
                                        ("vkd", "student_layer"), ("rkd", "teacher_layer")])
def test_bad_layer_name_is_refused_in_one_line_listing_the_layers(name, field):
    with pytest.raises(LabError) as e:
        make(name, {field: "conv9"})
    msg = str(e.value)
    assert "\n" not in msg and "conv9" in msg and field in msg
    allowed = "fc1" if field == "student_layer" else "conv1, conv2, pool"
    assert f"allowed: {allowed}" in msg


def test_at_refuses_bad_layers_and_mlp_students():
    with pytest.raises(LabError, match="allowed: conv1, conv2") as e:
        make("at", {"student": CNN_STUDENT, "student_layers": ["pool"], "teacher_layers": ["conv2"]})
    assert "\n" not in str(e.value)
    with pytest.raises(LabError, match="spatial features"):
        make("at")  # the default MLP student has no spatial layout
    with pytest.raises(LabError, match="teacher_layers"):
        make("at", {"student": CNN_STUDENT, "student_layers": ["conv1"], "teacher_layers": ["conv1", "conv2"]})


def test_ofa_refuses_bad_stage_and_fitnets_bad_stages_value():
    with pytest.raises(LabError, match="allowed: block1, block2"):
        make("ofa", {"student": VIT_STUDENT, "stages": ["norm"]})
    with pytest.raises(LabError, match="stages='three'; allowed: one, two"):
        make("fitnets", {"stages": "three"})
    with pytest.raises(LabError, match="hint_steps"):
        make("fitnets", {"hint_steps": 4})


def test_default_layers():
    mlp = build_classifier({"type": "clf_mlp", "in_dim": 64, "hidden": [32], "n_classes": 10})
    cnn = build_classifier({"type": "clf_cnn", "channels": [32, 64], "n_classes": 10})
    vit = build_classifier(VIT_STUDENT)
    assert (middle_layer(mlp), middle_layer(cnn), middle_layer(vit)) == ("fc1", "conv2", "block1")
    assert (penultimate_layer(mlp), penultimate_layer(cnn), penultimate_layer(vit)) == ("fc1", "pool", "norm")
    m = make("fitnets")
    assert (m.s_layer, m.t_layer, m.regressor.mode) == ("fc1", "conv2", "flat")
    m = make("fitnets", {"student": CNN_STUDENT, "student_layer": "conv1", "teacher_layer": "conv2"})
    assert m.regressor.mode == "conv"


# -- zero losses when the features agree ------------------------------------------------------
def test_feature_losses_vanish_on_equal_features_and_not_otherwise():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(16, 8, 4, 4, generator=g)
    e = torch.randn(16, 12, generator=g)
    e2 = torch.randn(16, 12, generator=g)
    assert float(hint_loss(e, e)) == 0
    assert float(at_loss(f, f)) < 1e-12
    assert float(at_loss(f, 3 * f)) < 1e-12  # Q is L2-normalised: scale-free
    assert float(at_loss(f, torch.randn(16, 8, 4, 4, generator=g))) > 1e-4
    assert float(rkd_distance_loss(e, e)) < 1e-12
    assert float(rkd_distance_loss(e, 5 * e + 1)) < 1e-10  # distances divided by their mean, translation-free
    assert float(rkd_angle_loss(e, 5 * e + 1)) < 1e-10
    assert float(rkd_distance_loss(e, e2)) > 1e-3 and float(rkd_angle_loss(e, e2)) > 1e-3
    assert float(vkd_loss(F.layer_norm(e, (12,)), e)) < 1e-12
    assert float(vkd_loss(e, e)) > 1e-3  # the teacher side is normalised, the student side is not
    a = torch.softmax(torch.randn(4, 2, 6, 6, generator=g), -1)
    assert float(attention_kl(a, a)) < 1e-7
    v = torch.randn(4, 2, 6, 5, generator=g)
    assert float(value_relation_kl(v, v)) < 1e-7
    assert float(value_relation_kl(v, torch.randn(4, 2, 6, 3, generator=g))) > 1e-3  # head dims may differ


def test_ofa_loss_is_ce_to_teacher_at_gamma_one_and_enhances_target_above():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(32, 10, generator=g), torch.randn(32, 10, generator=g)
    y = torch.randint(0, 10, (32,), generator=g)
    ce_to_teacher = -(t.softmax(-1) * s.log_softmax(-1)).sum(-1).mean()
    assert torch.allclose(ofa_loss(s, t, y, gamma=1.0), ce_to_teacher, atol=1e-6)
    # gamma > 1 puts more weight on the true class: the gradient pushes its logit up harder
    s1, s2 = s.clone().requires_grad_(), s.clone().requires_grad_()
    ofa_loss(s1, t, y, gamma=1.0).backward()
    ofa_loss(s2, t, y, gamma=1.5).backward()
    rows = torch.arange(32)
    assert bool((s2.grad[rows, y] < s1.grad[rows, y]).all())


def test_minilm_masked_value_relation_has_finite_gradients():
    v_t = torch.randn(2, 2, 7, 4)
    v_s = torch.randn(2, 2, 7, 3, requires_grad=True)
    value_relation_kl(v_t, v_s).backward()
    assert torch.isfinite(v_s.grad).all() and v_s.grad.abs().sum() > 0


# -- attention pooling shapes ------------------------------------------------------------------
def test_attention_maps_pool_to_the_smaller_size():
    conv = torch.randn(3, 5, 8, 8)
    tokens = torch.randn(3, 16, 7)  # a 4x4 ViT token grid
    assert attention_map(conv).shape == (3, 8, 8)
    assert attention_map(tokens).shape == (3, 4, 4)
    q = at_vector(attention_map(conv), size=4)
    assert q.shape == (3, 16) and torch.allclose(q.norm(dim=1), torch.ones(3))
    # CNN teacher (8x8) vs ViT student (4x4 tokens): the teacher map is pooled, the loss is finite
    assert torch.isfinite(at_loss(tokens, conv))
    with pytest.raises(LabError, match="square token grid"):
        attention_map(torch.randn(3, 15, 7))
    with pytest.raises(LabError, match="spatial features"):
        attention_map(torch.randn(3, 32))


def test_at_on_a_vit_student_pairs_blocks_with_teacher_convs():
    m = make("at", {"student": VIT_STUDENT})
    assert m.pairs == [("block1", "conv1"), ("block2", "conv2")]


# -- minilm --------------------------------------------------------------------------------------
def test_minilm_refuses_a_head_mismatch_in_one_line():
    spec = {"type": "tiny_lm", "vocab": 17, "dim": 8, "depth": 1, "heads": 1, "seq_len": 31}
    with pytest.raises(LabError) as e:
        make("minilm", {"student": spec}, task="language", teacher="kd/language/teacher")
    msg = str(e.value)
    assert "\n" not in msg and "heads=1" in msg and "teacher heads=2" in msg and "allowed: student heads=2" in msg


def test_minilm_is_language_only():
    with pytest.raises(LabError, match="supports lm tasks"):
        make("minilm")


# -- features are read without changing the networks; the teacher gets no gradient ------------------
def test_feature_methods_leave_teacher_untouched_and_train_extra_modules():
    for name, cfg in [("fitnets", {"stages": "one"}), ("vkd", {}), ("rkd", {}), ("at", {"student": CNN_STUDENT}),
                      ("ofa", {"student": VIT_STUDENT})]:
        m = make(name, cfg)
        before = {k: v.clone() for k, v in m.teacher.state_dict().items()}
        extra = {k: [p.detach().clone() for p in n.parameters()] for k, n in m.nets().items() if k != "student"}
        for _ in lab.train(m):
            pass
        assert all(torch.equal(before[k], v) for k, v in m.teacher.state_dict().items()), name
        for k, ps in extra.items():  # regressor / projector / branches really train
            assert any(not torch.equal(p0, p1) for p0, p1 in zip(ps, m.nets()[k].parameters())), (name, k)
        assert all(p.grad is None for p in m.teacher.parameters())


def test_vkd_projector_stays_orthogonal():
    m = make("vkd", {"steps": 6})
    for _ in lab.train(m):
        pass
    w = m.projector.weight  # (d_t, d_s) with d_s = 32 <= d_t = 256: orthonormal columns
    assert torch.allclose(w.T @ w, torch.eye(w.shape[1]), atol=1e-4)


def test_same_seed_same_student():
    outs = []
    for _ in range(2):
        m = make("rkd", {"steps": 3})
        for _ in lab.train(m):
            pass
        outs.append(torch.cat([p.detach().flatten() for p in m.student.parameters()]))
    assert torch.equal(outs[0], outs[1])


def test_run_with_features_teacher_side_has_no_graph():
    net = build_classifier({"type": "clf_cnn", "channels": [4, 8], "n_classes": 10})
    x = torch.randn(2, 1, 8, 8)
    _, f = run_with_features(net, x, ["conv1"], grad=False)
    assert not f["conv1"].requires_grad
    _, f = run_with_features(net, x, ["conv1"])
    assert f["conv1"].requires_grad
