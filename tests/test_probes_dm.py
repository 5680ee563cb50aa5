"""The distribution-matching probes (lab.probes.dm) return the documented data; their figures draw it."""
from __future__ import annotations

import plotly.graph_objects as go
import pytest
import torch

import lab
from lab.data import toy2d
from lab.diffusion.process import get_process
from lab.errors import LabError
from lab.probes.dm import FakeScoreTracker, empirical_score, fake_score_error, score_arrows, score_field
from lab.viz.dm import fake_score_error_figure, score_field_figure

FIELD_COLS = {"x", "y", "real_dx", "real_dy", "fake_dx", "fake_dy", "diff_dx", "diff_dy", "t", "where"}


@pytest.fixture(scope="module")
def tracked():
    cls = lab.get_method("dmd2")
    m = cls(cls.tiny_teacher, "8gaussians", {**cls.tiny, "steps": 6}, seed=0)
    tr = FakeScoreTracker(every=3, t_values=(0.3, 0.7), n=200, n_eval=100)
    for _ in lab.distill(m, callbacks=[tr]):
        pass
    return m, tr


def test_score_field_and_arrows(tracked):
    m, _ = tracked
    df = score_field(m, t=0.5, lim=2.0, n=7)
    assert FIELD_COLS <= set(df.columns) and len(df) == 49
    assert (df.diff_dx - (df.real_dx - df.fake_dx)).abs().max() < 1e-5
    arr = score_arrows(m, t=0.4, n=32)
    assert FIELD_COLS | {"sample_x", "sample_y"} <= set(arr.columns) and len(arr) == 32
    for d in (df, arr):
        fig = score_field_figure(d)
        assert isinstance(fig, go.Figure) and len(fig.data) >= 3


def test_fake_score_error_and_tracker(tracked):
    m, tr = tracked
    df = fake_score_error(m, (0.25, 0.5), n=200, n_eval=100)
    assert list(df.t) == [0.25, 0.5] and {"error", "error_eps", "rel_error", "teacher_error"} <= set(df.columns)
    assert (df.error >= 0).all() and df.error.notna().all()
    fr = tr.frame()
    assert sorted(fr.it.unique()) == [0, 3, 6] and set(fr.t) == {0.3, 0.7}
    for d in (df, fr):
        fig = fake_score_error_figure(d)
        assert isinstance(fig, go.Figure) and len(fig.data) >= 1
    tr2 = FakeScoreTracker()
    tr2.load_state_dict(tr.state_dict())
    assert len(tr2.frame()) == len(fr)


def test_empirical_score_matches_the_exact_mixture_score():
    """For a big sample of a Gaussian mixture, the empirical score approaches the analytic teacher's."""
    src = toy2d.get("8gaussians")
    teacher = lab.zoo.load("toy2d/8gaussians/analytic").denoiser
    proc = get_process("linear")
    x = src.sample(3000, 1)
    t = torch.full((400,), 0.5)
    x_t = proc.add_noise(src.sample(400, 2), torch.randn(400, 2, generator=torch.Generator().manual_seed(3)), t)
    es, ts = empirical_score(x, x_t, 0.5, proc), teacher.score(x_t, t)
    assert ((es - ts) ** 2).sum(-1).mean() < 0.05 * (ts ** 2).sum(-1).mean()


def test_probe_needs_a_distribution_matching_method():
    with pytest.raises(LabError, match="generate"):
        score_field(object())


def test_dmd2_gan_head_has_a_decision_field():
    """dmd2's GAN head exposes the same discriminator interface as add, so the decision-field probe draws it."""
    from lab.probes.adversarial import decision_field

    teacher = lab.zoo.load("toy2d/8gaussians/analytic")
    on = lab.get_method("dmd2")(teacher, "toy2d:8gaussians", {**lab.get_method("dmd2").tiny, "steps": 3, "gan_weight": 0.05})
    for _ in lab.distill(on):
        pass
    df = decision_field(on, t=0.2, n=9)
    assert len(df) == 81 and df["logit"].notna().all() and df["logit"].abs().max() < float("inf") and df["logit"].std() > 0
    off = lab.get_method("dmd2")(teacher, "toy2d:8gaussians", {**lab.get_method("dmd2").tiny, "steps": 3, "gan_weight": 0.0})
    with pytest.raises(lab.LabError, match="gan_weight"):
        decision_field(off, t=0.2, n=9)
