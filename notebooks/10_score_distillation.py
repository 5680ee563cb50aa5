# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
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
# # 10 · Score distillation for optimisation: SDS, VSD, ESD and DSD particles
#
# Every other notebook distils a *sampler*. Score distillation uses a frozen diffusion model for something else: to
# **optimise a parameter** so that what it renders looks like the teacher's samples. DreamFusion (Poole et al. 2022)
# optimises a NeRF with **score distillation sampling (SDS)**; ProlificDreamer (Wang et al. 2023) replaces it with
# **variational score distillation (VSD)**, which treats the parameters as *particles* of a distribution. On 2D points
# the "rendering" is the point itself, so the parameter is a cloud of free particles and we can watch every one of
# them move. SDS is mode seeking: each particle climbs to the nearest mode centre and stays there. VSD subtracts the
# score of the particles' own distribution, fitted online, so the particles repel each other and spread over the
# modes like data. Two later papers keep SDS's simplicity but restore diversity in other ways: **entropic score
# distillation (ESD**, Wang et al. 2024) mixes VSD's fake score with each particle's own, and **diverse score
# distillation (DSD**, Xu et al. 2024) gives each particle its own random seed and makes it follow that seed's path
# under the teacher.
#
# **Learning goals.** After this notebook you can:
# 1. write the SDS gradient w(t) (ε̂_teacher(x_t, t) − ε) and the VSD gradient w(t) (ε̂_teacher − ε̂_fake), and say
#    where each one pushes a particle;
# 2. record and read particle paths during an optimisation, and measure where the particles end;
# 3. measure SDS's mode collapse (particles piled on the mode centres) against VSD's coverage;
# 4. predict what the time schedule, the fake score, ESD's λ and DSD's seeds do to the particles, and
#    check it in a run.
#
# **In the app:** the zoo's particles side by side, with the inside view of VSD:
# [Generators: SDS and VSD particles](http://localhost:8501/Generators?dist=8gaussians&students=sds&students=vsd_particles&inside=vsd_particles);
# SDS live, particle by particle:
# [Distill live: sds](http://localhost:8501/Distill_live?dist=8gaussians&method=sds); the four methods side by side
# from the same particles, at the bottom of
# [Distill live: esd](http://localhost:8501/Distill_live?dist=8gaussians&method=esd).

# %% tags=["parameters"]
FAST = False  # the test suite sets FAST = True: fewer particles and optimisation steps, same lessons

# %%
import time

import numpy as np
import pandas as pd
import torch

import lab
import lab.viz.inside
import lab.viz.particles
from lab.metrics import mode_stats, sliced_wasserstein
from lab.probes.inside import inside_views
from lab.probes.particles import (ParticleRecorder, nearest_mode_distance, particle_metrics, particle_summary,
                                  score_distillation_side_by_side)

torch.set_num_threads(1)  # toy networks: one thread is as fast, and kind to a shared laptop
SEED = 0
DATA = "toy2d:8gaussians"
STEPS = 120 if FAST else 400           # optimisation steps of the live runs
PARTICLES = 256 if FAST else 512       # particles per live run
source = lab.data.toy2d.get("8gaussians")
data = source.sample(2000 if FAST else 4000, 1234)  # fresh data: the picture's background and the reference of every distance
teacher = lab.zoo.load("toy2d/8gaussians/teacher")
for name in ("sds", "vsd_particles", "esd", "dsd"):
    M = lab.get_method(name)
    print(f"{name:14s} {M.family} | {M.paper}\n               {M.mechanism}")


def show(views):
    """Draw every internal view of a saved particle set, each with its caption."""
    for v in views:
        print(f"— {v.title}: {v.caption}")
        lab.viz.inside.view_figure(v).show()


def travel(paths):
    """Mean distance each particle moved from its first recorded position to its last."""
    first = paths[paths.step == paths.step.min()].sort_values("particle")[["x", "y"]].to_numpy()
    last = paths[paths.step == paths.step.max()].sort_values("particle")[["x", "y"]].to_numpy()
    return float(np.linalg.norm(last - first, axis=1).mean())


# %% [markdown]
# ## 1. Two gradients
#
# Each step, every particle x is noised to x_t = α_t x + σ_t ε at a random time t, and the teacher's noise prediction
# ε̂_teacher(x_t, t) is compared with a reference:
#
# * **SDS**: the reference is the injected noise ε itself. The gradient w(t) (ε̂_teacher − ε) is, on average over ε,
#   the teacher's score at the noised point: it points uphill in the teacher's density. Every particle follows it
#   on its own, so it ends on the top of the nearest hill: a mode centre.
# * **VSD**: the reference is ε̂_fake(x_t, t), the noise prediction of a *second* network fitted online, with the
#   ordinary denoising loss, to all particles' current positions. Where the particles are already too dense, the
#   fake score pushes them apart; where they match the teacher's density, the two predictions cancel and the particle
#   stops. (This is the same real-minus-fake difference as DMD and VSD in notebook 07, applied to free points instead
#   of a generator's output.)
#
# The zoo holds a finished particle set of each (512 particles, 400 steps). Fidelity note: ProlificDreamer optimises
# a few NeRFs with Adam; here the particles take plain SGD steps, and SDS uses ProlificDreamer's two-stage time
# schedule (t up to 0.98, then only up to 0.3 for the second half); see the module's docstring for why.

# %%
zoo = {name: lab.zoo.load(f"toy2d/8gaussians/{name}") for name in ("sds", "vsd_particles")}
finals = {name: g.sample(g.card["recipe"]["config"]["n_particles"], nfe=1, seed=SEED).x for name, g in zoo.items()}
lab.viz.particles.final_particles_figure({k: v.numpy() for k, v in finals.items()}, data=data[:1500].numpy(),
                                         title="The zoo's particles after 400 steps, over the data").show()

# %% [markdown]
# ## 2. Particle paths
#
# Now both optimisations from the start: the particles begin as N(0, I) samples and a `ParticleRecorder` stores their
# positions every 10 steps. Open circles are the starting points, dots the end.

# %%
runs, seconds = {}, {}
for name in ("sds", "vsd_particles"):
    m = lab.get_method(name)(teacher, DATA, {"steps": STEPS, "n_particles": PARTICLES}, seed=SEED)
    rec = ParticleRecorder(every=10, n=128)
    t0 = time.perf_counter()
    for _ in lab.distill(m, callbacks=[rec]):
        pass
    runs[name], seconds[name] = rec.frame(), time.perf_counter() - t0
    print(f"{name:14s} {m.it} steps, {PARTICLES} particles, in {seconds[name]:.1f} s")
    lab.viz.particles.particle_paths_figure(runs[name], data=data[:1500].numpy(),
                                            title=f"{name}: particle paths over {m.it} steps").show()

# %% [markdown]
# Both sets fan out from the centre to the eight modes. The SDS paths bend sharply halfway, when the schedule drops
# the large noise levels and each particle starts to climb its own mode; the VSD particles settle in clouds around
# the modes. `particle_summary` measures the record step by step: `spread` (the cloud's standard deviation),
# `mode_dist` (mean distance to the nearest mode centre) and `move` (mean step length between records).

# %%
summaries = pd.concat({name: particle_summary(p, source.gmm) for name, p in runs.items()}, names=["method"])
for name in runs:
    lab.viz.particles.particle_summary_figure(summaries.loc[name], title=f"{name}: the particles over training").show()

# %% [markdown]
# ## 3. Mode coverage and mode collapse
#
# Two questions, two numbers. **Coverage**: does every mode get particles (`modes_covered` of 8, and `high_quality`,
# the share within 3 standard deviations of a mode)? **Collapse**: are the particles spread *within* each mode like the
# data (`mode_dist`, the mean distance to the nearest mode centre, against the data's own)?

# %%
rows = {"data": data[:1000]}
rows.update({f"{k} (zoo)": v for k, v in finals.items()})
rows.update({f"{k} (live, {STEPS} steps)": torch.tensor(p[p.step == p.step.max()][["x", "y"]].to_numpy(),
                                                         dtype=torch.float32) for k, p in runs.items()})
coverage = pd.DataFrame([{"points": name, **mode_stats(x, source.gmm),
                          "mode_dist": float(nearest_mode_distance(x.numpy(), source.gmm).mean()),
                          "swd": sliced_wasserstein(x, data)} for name, x in rows.items()]).set_index("points")
coverage.round(3)

# %% [markdown]
# Both methods cover all eight modes: SDS's collapse is not the loss of modes (the particles start spread over all
# of them) but the loss of *variety within* a mode. Each SDS particle sits on a centre, much closer than data points
# do; the VSD particles keep about the data's spread, which is why their SWD to the data is several times smaller.

# %%
dist = coverage.mode_dist
assert dist["sds (zoo)"] < 0.5 * dist["data"] < dist["vsd_particles (zoo)"], (
    f"SDS should pile onto the centres and VSD keep the data's spread: mode_dist {dist.round(3).to_dict()}")
print(f"mean distance to the nearest mode centre: SDS {dist['sds (zoo)']:.3f} < half the data's "
      f"{0.5 * dist['data']:.3f} < VSD {dist['vsd_particles (zoo)']:.3f}")

# %% [markdown]
# ## 4. Inside the two methods
#
# `inside_views` rebuilds each method around the zoo's particles. For VSD it first fits the fake score to the frozen
# particles (from its initialisation, a copy of the teacher). The views: the method's own field (the push on a
# particle at each place) and its time schedule over the run.

# %%
for name, g in zoo.items():
    print(f"=== {name}")
    show(inside_views(g, n=256, seed=SEED, fit_steps=50 if FAST else 200))

# %% [markdown]
# In SDS's field every arrow points to the nearest centre, and keeps pointing there however many particles already
# sit on it. VSD's field is the teacher's pull *minus* the particles' own: near zero where the particles already match
# the data, so nothing piles up.

# %% [markdown]
# ## 5. Entropic and diverse score distillation
#
# * **ESD** (`esd`) compares the teacher with a *mix* of two fake predictions,
#   ε_est = λ ε̂_fake(x_t, t) + (1 − λ) ε̂_fake(x_t, t | c). In 3D the condition c is the camera, and a fake score
#   conditioned on it reduces VSD to maximum likelihood per view: mode collapse again. Here the condition is the
#   particle itself, whose exact conditional prediction is the injected noise ε, so
#   ε_est = λ ε̂_fake + (1 − λ) ε: λ = 0 is SDS, λ = 1 is VSD, and the paper's setting (threestudio's
#   `guidance_scale_lora` s = 0.5, λ = 1 − s) sits between them. On average the particles then follow a *tempered*
#   teacher p^(1/λ): each narrow mode keeps about √λ of its width.
# * **DSD** (`dsd`) gives particle i a seed z_i for the whole run and precomputes the teacher's ODE path from z_i once.
#   Each step, at an annealed time t and a slightly noisier t', it noises the particle with the teacher's noise
#   prediction ε* on the seed's path at t', and pushes by w(t) [ε̂(x̃_t, t) − ε̂(x̃_t', t')]. That difference vanishes
#   when the particle is where its seed's path ends, so each particle goes to *its own* teacher sample, not to the
#   nearest mode.
#
# `score_distillation_side_by_side` trains all four from the same starting particles (on the exact 8-Gaussians
# teacher, which is fast) and returns their paths, the force on each particle at the start, middle and end of the
# run, and the measures: `spread` (the particles' std around their own cluster, the data's is 0.15), `fidelity`
# (mean distance to the nearest mode centre), `coverage` (share of data points with a particle within 0.15).

# %%
side = score_distillation_side_by_side("toy2d/8gaussians/analytic", "8gaussians", n_particles=128, steps=300,
                                       seed=SEED)
lab.viz.particles.side_by_side_figure(side, data=data[:1000].numpy()).show()
side["metrics"].round(3)

# %% [markdown]
# SDS piles its particles on the centres; VSD keeps the data's spread; ESD keeps a spread between the two (its λ =
# 0.5 gives about √0.5 of the mode width); DSD's paths cross the plane, because each particle heads for its own
# seed's teacher sample, often not the nearest mode, and they land spread over the modes like teacher samples.

# %%
spread = dict(zip(side["metrics"].method, side["metrics"].spread))
assert spread["esd"] > 1.5 * spread["sds"] and spread["dsd"] > 1.5 * spread["sds"], (
    f"ESD and DSD should keep more spread around the modes than SDS: {spread}")
print(f"spread around the modes: sds {spread['sds']:.3f}, esd {spread['esd']:.3f}, dsd {spread['dsd']:.3f}, "
      f"vsd_particles {spread['vsd_particles']:.3f}")

# %% [markdown]
# ### Exercise 10.1: The late stage of the schedule
#
# **Find:** what SDS's two-stage time schedule does. Run SDS twice for `STEPS` steps with `PARTICLES` particles: with
# the default config and with `"t_max_late": None` (noise levels up to 0.98 for the whole run), and measure the
# final particles' mean distance to the nearest mode centre (`particle_summary(...).mode_dist` at the last step, or
# `nearest_mode_distance` on the final positions).
#
# **Check:** without the late stage the particles' mean distance to the nearest mode centre is more than three times the distance with it

# %%
import workshop

mode_dist_late = ...     # your code: SDS with the default schedule
mode_dist_no_late = ...  # your code: SDS with "t_max_late": None
workshop.check("10.1", mode_dist_late=mode_dist_late, mode_dist_no_late=mode_dist_no_late)

# %% [markdown]
# ### Exercise 10.2: Where VSD's push comes from
#
# **Find:** what the fake score contributes to VSD. Run `vsd_particles` for `STEPS` steps with `PARTICLES` particles
# and `"lr_fake": 1e-9` (a fake score that stays the copy of the teacher it started as), record the paths, and
# compare the particles' mean travel (`travel(paths)`) with that of the default run in `runs["vsd_particles"]`.
#
# **Check:** with a frozen fake score the particles travel less than a tenth as far as with the default

# %%
travel_default = ...  # your code: travel(runs["vsd_particles"])
travel_frozen = ...   # your code: travel of the run with "lr_fake": 1e-9
workshop.check("10.2", travel_default=travel_default, travel_frozen=travel_frozen)

# %% [markdown]
# ### Exercise 10.3: SDS on a generator
#
# **Find:** what SDS does when the parameter is a generator x = z + g(z) instead of free particles (DreamFusion's
# NeRF is such a shared parameter). Run `sds` with `"param": "generator"` for 200 steps, sample 512 points from its
# generator (`m.generator().sample(512, nfe=1, seed=SEED).x`) and count the modes they cover with `mode_stats`;
# compare with the free particles of the live SDS run.
#
# **Check:** the SDS generator covers fewer modes than the SDS particles

# %%
modes_generator = ...  # your code: mode_stats(...)["modes_covered"] of the SDS generator
modes_particles = ...  # your code: the same for the final SDS particles
workshop.check("10.3", modes_generator=modes_generator, modes_particles=modes_particles)

# %% [markdown]
# ### Exercise 10.4: Where each DSD particle ends
#
# **Find:** where DSD sends each particle. Run `dsd` on the analytic teacher (`"toy2d/8gaussians/analytic"`) with
# 128 particles for `STEPS` steps. Its seeds' teacher samples (the ends of their precomputed ODE paths) are
# `m.paths[-1]`, row i for particle i. Measure the particles' mean distance to their own seed's sample and to the
# next particle's (`m.paths[-1].roll(1, 0)`).
#
# **Check:** each particle ends less than a quarter as far from its own seed's teacher sample as from another particle's

# %%
dist_own = ...    # your code: mean |x_i - end(z_i)|
dist_other = ...  # your code: mean |x_i - end(z_(i-1))|
workshop.check("10.4", dist_own=dist_own, dist_other=dist_other)

# %% [markdown]
# ## Recap
#
# - Score distillation optimises a parameter with a frozen diffusion model's noise predictions; on 2D points the
#   parameter is a cloud of particles and the gradient moves each one.
# - SDS compares the teacher with the injected noise: each particle climbs to a mode centre, so the variety within
#   each mode collapses (and a shared generator can collapse onto one mode).
# - VSD compares the teacher with a fake score fitted to the particles themselves: the push vanishes where the
#   particles already match the teacher, so they keep the data's spread; without a learning fake score nothing moves.
# - The time schedule matters: SDS averaged over large noise levels pulls the particles to the blurry centre of the
#   data, and its late, low-noise stage is what puts them on the modes.
# - ESD mixes the fake score with each particle's own (λ from SDS to VSD) and keeps a tempered spread; DSD sends each
#   particle along its own seed's teacher path, so particles from one start end at different teacher samples.
