# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Solutions of 10 · Score distillation for optimisation
#
# Run these cells in the notebook's kernel, after the notebook: they use its variables (`teacher`, `DATA`, `STEPS`,
# `PARTICLES`, `SEED`, `source`, `runs`, `travel`).

# %% [markdown]
# ## Solution 10.1
#
# Averaged over t up to 0.98, the SDS gradient is dominated by heavily noised inputs, where the teacher's best guess
# is the data's overall mean: the particles contract towards a ring well inside the modes. Only the low-noise late
# stage sees the individual modes, and puts each particle on one.

# %%
import workshop
from lab.probes.particles import nearest_mode_distance


def final_mode_dist(config):
    m = lab.get_method("sds")(teacher, DATA, {"steps": STEPS, "n_particles": PARTICLES, **config}, seed=SEED)
    for _ in lab.distill(m):
        pass
    x = m.generator().sample(PARTICLES, nfe=1, seed=SEED).x
    return float(nearest_mode_distance(x.numpy(), source.gmm).mean())


mode_dist_late, mode_dist_no_late = final_mode_dist({}), final_mode_dist({"t_max_late": None})
workshop.check("10.1", mode_dist_late=mode_dist_late, mode_dist_no_late=mode_dist_no_late)

# %% [markdown]
# ## Solution 10.2
#
# The VSD push is w(t) (ε̂_teacher − ε̂_fake). The fake score starts as a copy of the teacher, so at the start the two
# cancel exactly; it is the fake score learning the particles' *own* distribution (a Gaussian blob at first) that
# creates the difference. Frozen, it never does, and the particles stay where they started.

# %%
from lab.probes.particles import ParticleRecorder

m = lab.get_method("vsd_particles")(teacher, DATA, {"steps": STEPS, "n_particles": PARTICLES, "lr_fake": 1e-9},
                                    seed=SEED)
rec = ParticleRecorder(every=10, n=128)
for _ in lab.distill(m, callbacks=[rec]):
    pass
travel_default, travel_frozen = travel(runs["vsd_particles"]), travel(rec.frame())
workshop.check("10.2", travel_default=travel_default, travel_frozen=travel_frozen)

# %% [markdown]
# ## Solution 10.3
#
# Free particles each climb their own nearest mode, so all eight keep some. A generator is one shared set of weights:
# every sample's SDS gradient moves the same weights, mode seeking wins, and the whole generator ends on one mode.
# That is the 2D picture of DreamFusion's over-saturated, low-variety NeRFs.

# %%
from lab.metrics import mode_stats

m = lab.get_method("sds")(teacher, DATA, {"steps": 200, "param": "generator"}, seed=SEED)
for _ in lab.distill(m):
    pass
modes_generator = mode_stats(m.generator().sample(512, nfe=1, seed=SEED).x, source.gmm)["modes_covered"]
last = runs["sds"][runs["sds"].step == runs["sds"].step.max()]
modes_particles = mode_stats(torch.tensor(last[["x", "y"]].to_numpy(), dtype=torch.float32), source.gmm)["modes_covered"]
workshop.check("10.3", modes_generator=modes_generator, modes_particles=modes_particles)

# %% [markdown]
# ## Solution 10.4
#
# DSD's push w(t) [ε̂(x̃_t, t) − ε̂(x̃_t', t')] vanishes where the particle noised with its seed's ε* lies on the
# seed's own ODE path, i.e. at the path's end: each particle is drawn to its own seed's teacher sample, wherever
# it started, so the seeds (not the starting points or the nearest mode) decide where the particles land.

# %%
m = lab.get_method("dsd")("toy2d/8gaussians/analytic", DATA, {"steps": STEPS, "n_particles": 128}, seed=SEED)
for _ in lab.distill(m):
    pass
x, ends = m.param_net.x.detach(), m.paths[-1]
dist_own = float((x - ends).norm(dim=1).mean())
dist_other = float((x - ends.roll(1, 0)).norm(dim=1).mean())
workshop.check("10.4", dist_own=dist_own, dist_other=dist_other)
