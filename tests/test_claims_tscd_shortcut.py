"""Claims of TSCD (Hyper-SD) and shortcut models, measured on 8 Gaussians with the zoo teacher.

Every number compared is measured in the same test: same teacher, same seed, same training
budget, same evaluation noise (``make_noise(4000, 2, seed=99)``) and reference
(``src.sample(4000, 1234)``), distance ``sliced_wasserstein``.
"""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

import lab
from lab.diffusion.generators import load_generator, make_noise
from lab.metrics import sliced_wasserstein
from lab.probes.segments import boundary_gaps, segment_boundaries
from lab.viz.segments import boundary_gaps_figure, segment_boundaries_figure

TEACHER = "toy2d/8gaussians/teacher"


@pytest.fixture(scope="module")
def env():
    torch.set_num_threads(1)
    src = lab.data.toy2d.get("8gaussians")
    return {"src": src, "teacher": lab.zoo.load(TEACHER, train_if_missing=False),
            "ref": src.sample(4000, 1234), "z": make_noise(4000, 2, seed=99)}


def _train(name, teacher, cfg, seed=0):
    m = lab.get_method(name)(teacher, "8gaussians", cfg, seed=seed)
    for _ in lab.distill(m):
        pass
    return m


def _swd(gen, env, nfe, **kw):
    return float(sliced_wasserstein(gen.sample(z=env["z"], nfe=nfe, seed=0, **kw).x, env["ref"]))


TSCD_STEPS = 300


@pytest.mark.claim
def test_tscd_k_segment_students_beat_k1_at_same_nfe(env):
    """Hyper-SD: a K-segment consistency student sampled in K boundary jumps beats plain consistency
    distillation (K = 1) at the same NFE, same steps budget, same seed.

    K = 1 is scored with its own best sampler at that NFE: the better of multistep consistency
    sampling (jump to x0, re-noise; gamma = 1) and deterministic DDIM jumps (gamma = 0).
    """
    t = env["teacher"]
    k1 = _train("tscd", t, {"segments": 1, "steps": TSCD_STEPS}).generator()
    out = {}
    for K in (2, 4):
        gk = _train("tscd", t, {"segments": K, "steps": TSCD_STEPS}).generator()
        out[K] = (_swd(gk, env, K), min(_swd(k1, env, K, gamma=1.0), _swd(k1, env, K, gamma=0.0)))
    print("tscd K-segment vs K=1 (SWD at NFE = K):", out)
    for K, (seg, base) in out.items():
        assert seg < base, (K, out)


@pytest.mark.claim
def test_shortcut_one_model_serves_1_2_4_8_steps(env):
    """Shortcut models: one step-size-conditioned model serves 1, 2, 4 and 8 steps, its SWD falls as the
    number of steps grows, and its 1-step sample beats the teacher's 1-step (Euler) sample."""
    t = env["teacher"]
    m = _train("shortcut", t, {"steps": 600})
    g = m.generator()
    assert set(g.native_nfe) == {1, 2, 4, 8}
    swd = {k: _swd(g, env, k) for k in (1, 2, 4, 8)}
    teacher1 = _swd(t, env, 1)
    print("shortcut SWD by steps:", swd, "teacher@1:", teacher1)
    assert swd[1] > swd[2] > swd[4] > swd[8], swd
    assert swd[1] < teacher1, (swd[1], teacher1)


def test_segment_probe_and_viz(tmp_path):
    cls = lab.get_method("tscd")
    m = cls(cls.tiny_teacher, "8gaussians", {**cls.tiny, "steps": 4, "segments": [4, 2]})
    for _ in lab.distill(m):
        pass
    df = segment_boundaries(m, n=6)
    assert isinstance(df, pd.DataFrame)
    assert {"kind", "K", "path", "k", "t", "x", "y", "at_boundary", "teacher_x", "teacher_y", "gap"} <= set(df.columns)
    b = df[df.kind == "boundary"]
    assert sorted(b[b.K == 4].t) == [0.0, 0.25, 0.5, 0.75, 1.0] and sorted(b[b.K == 2].t) == [0.0, 0.5, 1.0]
    st = df[df.kind == "student"]
    assert len(st[st.K == 4]) == 6 * 5 and len(st[st.K == 2]) == 6 * 3
    assert st.gap.notna().all() and (st[st.t == 1.0].gap < 1e-6).all()  # same noise at t = 1
    tt = df[df.kind == "teacher"]
    assert tt.at_boundary.sum() == 6 * 5  # the teacher's points at 1, .75, .5, .25, 0
    gaps = boundary_gaps(df)
    assert list(gaps.columns) == ["K", "t", "gap"]
    fig = segment_boundaries_figure(df)
    assert isinstance(fig, go.Figure) and len(fig.data) == 6
    assert isinstance(boundary_gaps_figure(gaps), go.Figure) and len(boundary_gaps_figure(gaps).data) == 2


def test_tscd_k1_is_consistency_distillation():
    """K = 1: TSCD's loss, targets and first update are those of lab.methods.consistency, bit for bit."""
    tiny = {"batch": 64, "student_net": {"type": "mlp", "hidden": 32, "depth": 2, "t_dim": 16}, "steps": 3, "n_intervals": 8}
    a = lab.get_method("tscd")("toy2d/8gaussians/analytic", "8gaussians", {**tiny, "segments": 1}, seed=3)
    b = lab.get_method("consistency")("toy2d/8gaussians/analytic", "8gaussians", tiny, seed=3)
    for _ in lab.distill(a):
        pass
    for _ in lab.distill(b):
        pass
    for pa, pb in zip(a.student.net.parameters(), b.student.net.parameters()):
        torch.testing.assert_close(pa, pb)
    batch = a.probe_batch(16, 0.5, seed=1)
    torch.testing.assert_close(a.targets(batch, t=0.5).target, b.targets(batch, t=0.5).target)


def test_segment_and_shortcut_generators_round_trip(tmp_path):
    for name in ("tscd", "shortcut"):
        cls = lab.get_method(name)
        m = cls(cls.tiny_teacher, "8gaussians", {**cls.tiny, "steps": 2})
        gen = m.generator()
        gen.save(tmp_path / name)
        back = load_generator(tmp_path / name)
        assert back.kind == gen.kind and tuple(back.native_nfe) == tuple(gen.native_nfe)
        z = make_noise(32, 2, seed=1)
        for k in gen.native_nfe:
            torch.testing.assert_close(back.sample(z=z, nfe=k).x, gen.sample(z=z, nfe=k).x)
