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
def test_tscd_segments_beat_k1_at_4_nfe_and_keep_the_teacher_trajectory_at_2(env):
    """Hyper-SD, same steps budget (300), same seed, NFE = K for the K-segment students.

    K = 1 (plain consistency distillation) is scored with its own best sampler at that NFE: the
    better of multistep consistency sampling (jump to x0, re-noise; gamma = 1) and
    deterministic DDIM jumps (gamma = 0).

    What holds on 8 Gaussians, and is asserted:
    - 4 NFE: the 4-segment student beats K = 1 in SWD (measured 0.092 vs 0.110).
    - 2 NFE: the 2-segment student reaches the bench goal (within 1.25x of the teacher at 50
      steps; measured 0.101 vs 0.090) and stays on the teacher's ODE: its output is closer to the
      teacher's own 50-step output from the same noise than K = 1's (0.107 vs 0.153; K = 1's
      stochastic sampler is at 1.06 by construction).
    What does not hold at this scale: the 2-NFE SWD ordering. It is a tie (0.1009 vs 0.1014 at
    300 steps, 0.094 vs 0.093 at 600, 0.116 vs 0.103 at 150): the SWD floor of this teacher
    (about 0.09) leaves no headroom at 2 NFE, since K = 1 at 2 steps is already near it.
    """
    t, z = env["teacher"], env["z"]
    t50 = t.sample(z=z, nfe=50, seed=0).x
    teacher50 = float(sliced_wasserstein(t50, env["ref"]))
    k1 = _train("tscd", t, {"segments": 1, "steps": TSCD_STEPS}).generator()

    def gap(gen, nfe, **kw):
        return float((gen.sample(z=z, nfe=nfe, seed=0, **kw).x - t50).norm(dim=1).mean())

    out = {}
    for K in (2, 4):
        gk = _train("tscd", t, {"segments": K, "steps": TSCD_STEPS}).generator()
        out[K] = {"swd_K": _swd(gk, env, K), "swd_k1": min(_swd(k1, env, K, gamma=1.0), _swd(k1, env, K, gamma=0.0)),
                  "gap_K": gap(gk, K), "gap_k1": min(gap(k1, K, gamma=1.0), gap(k1, K, gamma=0.0))}
    print("tscd, teacher@50", teacher50, out)
    assert out[4]["swd_K"] < out[4]["swd_k1"], out
    assert out[2]["swd_K"] <= 1.25 * teacher50, (out, teacher50)
    assert out[2]["gap_K"] < out[2]["gap_k1"], out


@pytest.mark.claim
def test_shortcut_one_model_serves_1_2_4_8_steps(env):
    """Shortcut models: ONE step-size-conditioned model (defaults, 800 steps) serves 1, 2, 4 and 8
    steps, all within 1.25x of the teacher at 50 steps; more steps help (the best of 4 and 8 steps
    beats the best of 1 and 2); and the 1-step shortcut beats the teacher's 1-step Euler sample
    (measured 0.103 vs 1.37).

    Not asserted: a strictly falling SWD 1 > 2 > 4 > 8. Near this teacher's SWD floor (about 0.09)
    neighbouring step counts are within training noise (seed 0: 0.103/0.081/0.075/0.086; seed 1:
    0.106/0.106/0.087/0.085; see the fidelity notes of lab/methods/flow_map/shortcut.py).
    """
    t = env["teacher"]
    m = _train("shortcut", t, {})
    g = m.generator()
    assert set(g.native_nfe) == {1, 2, 4, 8}
    swd = {k: _swd(g, env, k) for k in (1, 2, 4, 8)}
    teacher1, teacher50 = _swd(t, env, 1), _swd(t, env, 50)
    print("shortcut SWD by steps:", swd, "teacher@1:", teacher1, "teacher@50:", teacher50)
    assert all(v <= 1.25 * teacher50 for v in swd.values()), (swd, teacher50)
    assert min(swd[4], swd[8]) < min(swd[1], swd[2]), swd
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
    """K = 1: TSCD's loss, targets and first update are those of lab.methods.consistency.consistency, bit for bit."""
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
