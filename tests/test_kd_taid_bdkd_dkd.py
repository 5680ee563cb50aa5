"""Unit tests of the TAID, BD-KD and DKD methods and of the TAID probe/figures."""
from __future__ import annotations

import pytest
import torch

import lab
from lab.errors import LabError
from lab.kd.logit.bdkd import balanced_kl
from lab.kd.logit.dkd import dkd_terms
from lab.kd.logit.taid import interpolate
from lab.losses import forward_kl, reverse_kl
from lab.probes.taid import interpolated, taid_trace
from lab.viz.taid import interpolated_figure, taid_trace_figure


def _train(m):
    for _ in lab.train(m):
        pass
    return m


def test_taid_t_never_decreases_and_stays_in_range():
    cfg = {"steps": 40, "batch": 16, "t_start": 0.3, "t_end": 0.9, "alpha": 0.05}
    m = _train(lab.kd.get("taid")("kd/digits/teacher", "digits", cfg, seed=0))
    tr = taid_trace(m)
    assert len(tr) == 40 and list(tr.step) == list(range(1, 41))
    assert (tr.t.diff().dropna() >= 0).all()
    assert tr.t.min() >= 0.3 and tr.t.max() <= 0.9 + 1e-12
    assert tr.t.iloc[-1] == pytest.approx(0.9)  # the linear floor reaches t_end at the last step
    # a large alpha moves t above the linear floor somewhere (the adaptive term is live)
    floor = 0.3 + 0.6 * tr.step / 40
    assert (tr.t > floor + 1e-9).any()


def test_taid_t_update_rule_against_hand_computation():
    m = lab.kd.get("taid")("kd/digits/teacher", "digits", {"steps": 100, "alpha": 0.1, "beta": 0.5}, seed=0)
    assert m.update_t(2.0, 1) == pytest.approx(max(0.4, 0.4 + 0.6 * 1 / 100))  # first step: floor only
    t0 = m.t
    t1 = m.update_t(1.0, 2)  # delta = 0.5, m = 0.25
    import math
    want = min(1.0, max(0.4 + 0.6 * 2 / 100, t0 + 0.1 / (1 + math.exp(-0.25)) * (1 - t0)))
    assert m.m == pytest.approx(0.25) and t1 == pytest.approx(want)
    t2 = m.update_t(5.0, 3)  # the loss got worse: t still does not decrease
    assert t2 >= t1


def test_taid_resume_is_exact():
    cfg = {"steps": 20, "batch": 16, "alpha": 0.05}
    full = _train(lab.kd.get("taid")("kd/digits/teacher", "digits", cfg, seed=1))
    half = lab.kd.get("taid")("kd/digits/teacher", "digits", cfg, seed=1)
    for _ in lab.train(half, steps=10):
        pass
    sd = half.state_dict()
    resumed = lab.kd.get("taid")("kd/digits/teacher", "digits", cfg, seed=1)
    resumed.load_state_dict(sd)
    assert (resumed.t, resumed.m, resumed.J_prev) == (half.t, half.m, half.J_prev)
    _train(resumed)
    assert resumed.t == full.t and resumed.m == full.m and resumed.J_prev == full.J_prev
    assert taid_trace(resumed).equals(taid_trace(full))


def test_taid_targets_interpolate_logits():
    m = lab.kd.get("taid")("kd/digits/teacher", "digits", {"steps": 5}, seed=0)
    batch = m.sample_batch(0)
    tg = m.targets(batch)
    assert tg.info["t"] == pytest.approx(0.4)
    with torch.no_grad():
        s, t = m.student(batch["x"]), m.teacher_logits(batch["x"])
    want = torch.softmax(0.6 * s + 0.4 * t, -1)
    assert torch.allclose(tg.target, want, atol=1e-6)
    assert torch.allclose(interpolate(s, t, 1.0), torch.softmax(t, -1), atol=1e-6)
    # the target is strictly between student and teacher: closer to the teacher than the student is
    kl = lambda a, b: (a * (a.log() - b.log())).sum(-1).mean()
    assert kl(tg.teacher, tg.target) < kl(tg.teacher, tg.student)


def test_taid_language_loss_gradient_goes_to_student_only():
    m = lab.kd.get("taid")("kd/language/teacher", "language", {"steps": 3, "batch": 4}, seed=0)
    s = torch.randn(4, 31, 17, requires_grad=True)
    t = torch.randn(4, 31, 17)
    loss, terms = m.loss(s, t, torch.zeros(4, 31, dtype=torch.long), {}, 0)
    loss.backward()
    # gradient of -sum p_t log q wrt z_S (p_t detached) is (q - p_t)/rows
    q = torch.softmax(s.detach(), -1)
    p = torch.softmax(0.6 * s.detach() + 0.4 * t, -1)
    assert torch.allclose(s.grad, (q - p) / (4 * 31), atol=1e-6)


@pytest.mark.parametrize("name,field,value,word", [
    ("taid", "t_start", 1.5, "[0, 1]"), ("taid", "t_end", 0.2, ">= t_start"), ("taid", "alpha", -1.0, "[0, 1]"),
    ("taid", "beta", 1.0, "[0, 1)"), ("dkd", "warmup", -3, "integer >= 0"), ("dkd", "beta", -1.0, ">= 0"),
    ("bdkd", "online", "yes", "true or false"), ("bdkd", "gap_scale", -1.0, ">= 0")])
def test_config_validation_names_the_field_and_allowed_values(name, field, value, word):
    with pytest.raises(LabError) as e:
        lab.kd.get(name)("kd/digits/teacher", "digits", {field: value})
    msg = str(e.value)
    assert "\n" not in msg and f"{field}={value!r}" in msg and word in msg


def test_dkd_refuses_the_language_task_with_the_reason():
    with pytest.raises(LabError, match="target/non-target split"):
        lab.kd.get("dkd")("kd/language/teacher", "language", {})


def test_dkd_terms():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(64, 10, generator=g)
    y = torch.randint(0, 10, (64,), generator=g)
    tckd, nckd = dkd_terms(z, z.clone(), y, 4.0)
    assert float(tckd) == pytest.approx(0.0, abs=1e-6) and float(nckd) == pytest.approx(0.0, abs=1e-6)
    zt = torch.randn(64, 10, generator=g) * 3
    tckd, nckd = dkd_terms(z, zt, y, 4.0)
    assert tckd > 0 and nckd > 0
    # the paper's decomposition: KD = TCKD + (1 - p_gt^T) * NCKD, per row; check it on the batch rows
    T = 4.0
    p = torch.softmax(zt / T, -1)
    w = 1 - p[torch.arange(64), y]
    kd_rows = forward_kl(z, zt, temperature=T, reduction="none")
    t_rows = torch.stack([dkd_terms(z[i:i + 1], zt[i:i + 1], y[i:i + 1], T)[0] for i in range(64)])
    n_rows = torch.stack([dkd_terms(z[i:i + 1], zt[i:i + 1], y[i:i + 1], T)[1] for i in range(64)])
    assert torch.allclose(kd_rows, t_rows + w * n_rows, atol=1e-4)


def test_dkd_warmup_ramps_the_distillation_weight():
    m = lab.kd.get("dkd")("kd/digits/teacher", "digits", {"steps": 10, "warmup": 4}, seed=0)
    assert [m.weight(i) for i in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_bdkd_balanced_kl_endpoints_and_weights():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(32, 10, generator=g), torch.randn(32, 10, generator=g) * 2
    loss, w, fkl, rkl = balanced_kl(s, t, 4.0, gap_scale=0.0)  # equal weights
    assert torch.allclose(w, torch.full_like(w, 0.5))
    want = 0.5 * (forward_kl(s, t, temperature=4.0) + reverse_kl(s, t, temperature=4.0))
    assert float(loss) == pytest.approx(float(want), rel=1e-5)
    _, w, _, _ = balanced_kl(s, t, 4.0, gap_scale=50.0)
    hs = -(torch.softmax(s / 4, -1) * torch.log_softmax(s / 4, -1)).sum(-1)
    ht = -(torch.softmax(t / 4, -1) * torch.log_softmax(t / 4, -1)).sum(-1)
    # reverse KL where the student is the more confident (lower entropy) one
    assert ((w > 0.5) == (hs < ht)).all()


def test_bdkd_online_trains_the_teacher_copy_only():
    m = lab.kd.get("bdkd")("kd/digits/teacher", "digits", {"steps": 3, "batch": 16, "online": True}, seed=0)
    before = {k: v.clone() for k, v in m.teacher.state_dict().items()}
    online_before = {k: v.clone() for k, v in m.online_teacher.state_dict().items()}
    _train(m)
    assert all(torch.equal(before[k], v) for k, v in m.teacher.state_dict().items())
    assert any(not torch.equal(online_before[k], v) for k, v in m.online_teacher.state_dict().items())
    assert "teacher_kl" in m.compute(m.sample_batch(0), 0)[1]


def test_taid_probe_and_figures():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g) * 3
    df = interpolated(s, t, [0.0, 0.5, 1.0])
    assert set(df.t) == {0.0, 0.5, 1.0} and len(df) == 15
    per = df.groupby("t").prob.sum()
    assert torch.allclose(torch.tensor(per.values), torch.ones(3, dtype=torch.float64), atol=1e-9)
    kl = df.groupby("t").kl_to_teacher.first()
    assert kl[1.0] == pytest.approx(0.0, abs=1e-9) and kl[0.0] > kl[0.5] > 0
    assert torch.allclose(torch.tensor(df[df.t == 0.0].prob.values), torch.softmax(s.double(), -1).mean(0))
    with pytest.raises(LabError, match="t_values"):
        interpolated(s, t, [1.5])
    with pytest.raises(LabError, match="taid/t"):
        taid_trace([{"step": 1, "loss": 0.3}])
    tr = taid_trace([{"step": 1, "taid/t": 0.4}, {"step": 2, "taid/t": 0.5}])
    assert list(tr.t) == [0.4, 0.5]
    fig = taid_trace_figure(tr, 0.4, 1.0)
    assert len(fig.data) == 2 and list(fig.data[0].y) == [0.4, 0.5]
    fig = interpolated_figure(df)
    assert len(fig.data) == 3 + 2
