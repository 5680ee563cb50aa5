"""Claim tests for the data-free methods: flow maps without data (Tong et al. 2025) and BOOT (Gu et al. 2023).

Every comparison is between numbers measured in the same test, on the same noise and the
same reference samples; nothing is compared against a stored number.
"""
from __future__ import annotations

import pytest
import torch

import lab
from lab.data.toy2d import PointCloud, Source
from lab.diffusion import make_noise
from lab.methods.flow_map.boot import BootGenerator
from lab.methods.flow_map.flowmap import FlowMapGenerator
from lab.probes.paths import path_error as path_error_probe
from lab.viz.paths import path_error_figure
from _claims import swd, teacher_bar  # the shared distance and bar; the `eight` fixture is in conftest.py

N = 4000


class NoData(Source):
    """A data source that fails the test if anything samples it."""

    name, spec = "no-data", "no-data"

    def _draw(self, n, g):
        raise AssertionError("a data-free method sampled the dataset")




def train(name, teacher, data, config):
    m = lab.get_method(name)(teacher, data, config, seed=0)
    for _ in lab.distill(m):
        pass
    return m


@pytest.mark.claim
def test_claim_flowmap_data_free_matches_the_teacher_better_than_data_based_under_teacher_data_mismatch(eight):
    """Tong et al.: a dataset that is not what the teacher generates (here the 8 Gaussians shifted
    by +3) misleads data-based flow-map distillation; sampling only the prior does not.

    Both runs: same objective, (t, s) schedule, steps and seed; the data-free one is given a
    data source that raises if sampled. Distances are to the TEACHER's 50-step samples.
    Holds at 2 and 4 jumps (the map is evaluated at states with t < 1, where the data-based
    run trained on noised shifted data). At 1 jump both maps start from pure noise at t = 1,
    an input that is the same with or without data under this objective, so the 1-step
    numbers are close and are not asserted (the paper's 1-step gap comes from data-based
    objectives that tie the t = 1 map to data-noised states, which ours does not).
    """
    src, teacher, _, z = eight
    teacher50 = teacher.sample(z=make_noise(N, 2, seed=5), nfe=50).x
    shifted = PointCloud(src.sample(20000, 7) + 3.0, "8gaussians+3")
    cfg = {"steps": 300}
    free = train("flowmap", teacher, NoData(), {**cfg, "data_free": True}).generator()
    based = train("flowmap", teacher, shifted, {**cfg, "data_free": False}).generator()
    for nfe in (2, 4):
        f, b = swd(free, nfe, z, teacher50), swd(based, nfe, z, teacher50)
        assert f < b, (nfe, f, b)


@pytest.mark.claim
def test_claim_boot_without_data_beats_the_teacher_at_one_step(eight):
    """Gu et al. 2023 (BOOT: a one-step student close to its many-step teacher, distilled with no
    data): trained with no data at all (the data source raises if sampled), the one-step BOOT student
    is within BAR (1.5x) of the teacher at 50 NFE, and beats the teacher at 1 NFE, both against real data.

    800 steps with an EMA of the map (decay 0.99, the sampled student) were chosen on seeds 1-3: 1.15x,
    1.16x, 1.16x the teacher at 50; without the EMA the raw map oscillated between checkpoints (1.21-1.41x
    at 300 steps, 1.31-1.51x at 500, 1.09-1.37x at 800). Asserted on seed 0."""
    _, teacher, ref, z = eight
    t50, bar = teacher_bar(teacher, z, ref)
    m = train("boot", teacher, NoData(), {"steps": 800, "ema": 0.99})
    s1, t1 = swd(m.generator(), 1, z, ref), swd(teacher, 1, z, ref)
    print(f"boot 1-step {s1:.4f} ({s1 / t50:.2f}x teacher@50 {t50:.4f}), teacher@1 {t1:.4f}")
    assert s1 < t1, (s1, t1)
    assert s1 <= bar, (s1, t50)


# ---------------------------------------------------------------- non-claim checks
@pytest.fixture(scope="module")
def tiny():
    def get(name):
        cls = lab.get_method(name)
        return train(name, cls.tiny_teacher, NoData(), {**cls.tiny, "steps": 5})

    return get


@pytest.mark.parametrize("name,kind", [("flowmap", FlowMapGenerator), ("boot", BootGenerator)])
def test_data_free_methods_never_sample_data_and_probe_their_path(name, kind, tiny):
    m = tiny(name)  # NoData raises if sampled
    gen = m.generator()
    assert isinstance(gen, kind)
    df = path_error_probe(gen, m.teacher_gen, n=64, points=4, fine_steps=16)
    kinds = ["jump", "chain"] if name == "flowmap" else ["jump"]
    assert list(df.columns) == ["t", "kind", "error", "teacher_spread"]
    assert len(df) == 4 * len(kinds) and sorted(df["kind"].unique()) == sorted(kinds)
    assert df["error"].notna().all() and (df["error"] >= 0).all()
    import plotly.graph_objects as go

    fig = path_error_figure(df)
    assert isinstance(fig, go.Figure) and len(fig.data) == len(kinds) + 1


def test_flowmap_data_based_samples_data_and_boundary_holds():
    cls = lab.get_method("flowmap")
    m = cls(cls.tiny_teacher, "8gaussians", {**cls.tiny, "steps": 2, "data_free": False}, seed=0)
    b = m.sample_batch(0)
    assert "x0" in b and "z" not in b
    gen = m.generator()
    z = make_noise(16, 2, seed=1)
    torch.testing.assert_close(gen.state_at(z, 1.0), z)  # X(x, t, t) = x


def test_boot_boundary_and_targets():
    cls = lab.get_method("boot")
    m = cls(cls.tiny_teacher, NoData(), {**cls.tiny, "steps": 2}, seed=0)
    z = make_noise(16, 2, seed=1)
    torch.testing.assert_close(m.generator().state_at(z, 1.0), z)  # g(z, 1) = z
    with pytest.raises(ValueError, match="noise"):
        m.targets({"x_t": z, "t": torch.full((16,), 0.5)}, t=0.5)
    tg = m.targets(m.probe_batch(16, 0.5), t=0.5)
    assert tg.target.shape == (16, 2) and torch.isfinite(tg.target).all()
