"""Claims for score distillation on particles (sds, vsd_particles) and the particle-path probe.

DreamFusion's SDS is mode seeking: every particle climbs to a mode of the (noised) teacher
density, so the particles collapse onto the mode centres. ProlificDreamer's VSD subtracts the
score of the particles' own distribution (a fake score fitted online), so the particles spread
out like samples: they cover every mode with the data's within-mode spread. Everything is
compared with numbers measured in the same test (the data's own spread, the other method).
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

import lab
from lab.diffusion import make_noise
from lab.metrics import mode_stats, sliced_wasserstein
from lab.probes.particles import ParticleRecorder, nearest_mode_distance, particle_paths, particle_summary
from lab.viz.particles import final_particles_figure, particle_paths_figure, particle_summary_figure

TEACHER = "toy2d/8gaussians/analytic"


def _train(name, cfg, every=50):
    m = lab.get_method(name)(TEACHER, "8gaussians", cfg, seed=0)
    rec = ParticleRecorder(every=every, n=None)
    for _ in lab.distill(m, callbacks=[rec]):
        pass
    return m, rec.frame()


@pytest.mark.claim
def test_sds_particles_collapse_onto_modes_while_vsd_particles_cover_the_distribution():
    src = lab.data.toy2d.get("8gaussians")
    ref = src.sample(4000, 1234)
    z = make_noise(4000, 2, seed=99)
    data_dist = float(nearest_mode_distance(ref.numpy(), src.gmm).mean())
    data_modes = mode_stats(ref, src.gmm)["modes_covered"]

    cfg = {"n_particles": 256, "steps": 300}
    sds, sds_paths = _train("sds", cfg)
    vsd, vsd_paths = _train("vsd_particles", cfg)
    x_sds, x_vsd = sds.generator().sample(256).x, vsd.generator().sample(256).x
    d_sds = float(nearest_mode_distance(x_sds.numpy(), src.gmm).mean())
    d_vsd = float(nearest_mode_distance(x_vsd.numpy(), src.gmm).mean())
    ms_sds, ms_vsd = mode_stats(x_sds, src.gmm), mode_stats(x_vsd, src.gmm)
    swd_sds = sliced_wasserstein(sds.generator().sample(z=z).x, ref)
    swd_vsd = sliced_wasserstein(vsd.generator().sample(z=z).x, ref)
    print(f"mean distance to nearest mode: data {data_dist:.3f}, sds {d_sds:.3f}, vsd {d_vsd:.3f}; "
          f"modes sds {ms_sds['modes_covered']}, vsd {ms_vsd['modes_covered']}, data {data_modes}; "
          f"swd sds {swd_sds:.3f}, vsd {swd_vsd:.3f}")

    # SDS: particles sit on the mode centres, far tighter than the data
    assert d_sds < 0.5 * data_dist
    assert ms_sds["high_quality"] > 0.95
    # VSD: within-mode spread close to the data's, every mode the data covers is covered
    assert 0.6 * data_dist < d_vsd < 1.4 * data_dist
    assert ms_vsd["modes_covered"] == data_modes
    assert d_vsd > 2 * d_sds
    # the collapsed SDS set is a worse sample of the distribution than the VSD set
    assert swd_vsd < swd_sds

    # the recorded paths show the two behaviours over training as well
    s_sds, s_vsd = particle_summary(sds_paths, src.gmm), particle_summary(vsd_paths, src.gmm)
    assert s_sds.mode_dist.iloc[-1] < s_sds.mode_dist.iloc[0]
    assert s_vsd.mode_dist.iloc[-1] < s_vsd.mode_dist.iloc[0]
    assert s_vsd.spread.iloc[-1] > s_sds.spread.iloc[-1] * 0.9  # both keep the ring's overall extent


def test_particle_probe_and_figures():
    m = lab.get_method("sds")(TEACHER, "8gaussians", {"n_particles": 32, "steps": 20}, seed=0)
    paths = particle_paths(m, every=5, n=16)
    assert list(paths.columns) == ["step", "particle", "x", "y"]
    assert sorted(paths.step.unique()) == [0, 5, 10, 15, 20]
    assert len(paths) == 5 * 16 and np.isfinite(paths[["x", "y"]].to_numpy()).all()
    src = lab.data.toy2d.get("8gaussians")
    summ = particle_summary(paths, src.gmm)
    assert list(summ.columns) == ["step", "n", "move", "spread", "mode_dist"] and len(summ) == 5
    data = src.sample(200, 0).numpy()
    for fig in (particle_paths_figure(paths, data), final_particles_figure({"sds": paths}, data),
                particle_summary_figure(summ)):
        assert isinstance(fig, go.Figure) and len(fig.data) >= 2


def test_generator_param_and_resampling():
    m = lab.get_method("sds")(TEACHER, "8gaussians", {"param": "generator", "batch": 64, "steps": 5}, seed=0)
    for _ in lab.distill(m):
        pass
    x = m.generator().sample(100, seed=3).x
    assert x.shape == (100, 2) and torch.isfinite(x).all()
    p = lab.get_method("vsd_particles")(TEACHER, "8gaussians", {"n_particles": 16, "steps": 2, "fake_warmup": 1}, seed=0)
    for _ in lab.distill(p):
        pass
    g = p.generator()
    torch.testing.assert_close(g.sample(10).x, p.param_net.x.detach()[:10])
    big = g.sample(50, seed=1).x  # more than the particle count: resampled with replacement
    assert big.shape == (50, 2)
    assert torch.cdist(big, p.param_net.x.detach()).min(1).values.max() < 1e-6
    torch.testing.assert_close(g.sample(50, seed=1).x, big)
    tg = p.targets(p.probe_batch(8, 0.5), t=0.5)
    assert tg.space == "x0" and tg.target.shape == (8, 2) and tg.student is not None
    with pytest.raises(ValueError):
        p.targets({"x_t": torch.zeros(4, 2)}, t=0.5)
