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
# # Trajectory methods: consistency, sCM and shortcut models
#
# A flow teacher samples by integrating an ODE, dx/dt = v(x, t), from noise (t = 1) to data (t = 0). The
# **trajectory** family distils the *map* that this ODE defines, so that the student can jump along a trajectory in
# one or a few steps instead of crawling along it:
#
# | method | what the student learns | how it is supervised |
# |---|---|---|
# | `consistency` (Song et al. 2023) | f(x_t, t) = the trajectory's origin x0, from any point | two **adjacent** points of a teacher trajectory must map to the same origin (one teacher ODE step apart, EMA target network) |
# | `scm` (Lu & Song 2024) | the same f, in TrigFlow time | the **continuous-time** limit: the total derivative df/dt along the teacher's ODE is driven to zero; df/dt is computed exactly with a Jacobian-vector product (`torch.func.jvp`) |
# | `shortcut` (Frans et al. 2024) | s(x_t, t, d) = the average velocity over a step of size d | one step of size 2d must equal two steps of size d; the smallest d copies the teacher's velocity |
#
# This notebook looks at **what each regresses to** and at **how the paths look** (their straightness), and measures
# each at 1, 2, 4 and 8 steps against the teacher at the same number of steps.

# %%
import time

import pandas as pd
import torch

import lab
import lab.probes
import lab.viz
from lab.metrics import sliced_wasserstein

torch.set_num_threads(1)
SEED = 0
DATA = "toy2d:8gaussians"
source = lab.data.toy2d.get("8gaussians")
teacher = lab.zoo.load("toy2d/8gaussians/teacher")
ref = source.sample(4000, 1234)
z = lab.diffusion.make_noise(4000, 2, seed=99)
for name in ("consistency", "scm", "shortcut"):
    M = lab.get_method(name)
    print(f"{name:12s} {M.paper}\n             {M.mechanism}")

# %% [markdown]
# ## 1. Distil the three
#
# Short schedules (a few hundred steps each, about a third of the defaults) so this runs in a minute or two on a laptop;
# `bench/RESULTS.md` has the default schedules on four datasets.

# %%
runs = {"consistency": {"steps": 400}, "scm": {"steps": 500}, "shortcut": {"steps": 400}}
methods, seconds = {}, {}
for name, cfg in runs.items():
    m = lab.get_method(name)(teacher, DATA, cfg, seed=SEED)
    t0 = time.perf_counter()
    for _ in lab.distill(m):
        pass
    methods[name], seconds[name] = m, time.perf_counter() - t0
    print(f"{name:12s} {m.it} steps in {seconds[name]:.1f} s, native NFE {m.generator().native_nfe}")

# %% [markdown]
# ## 2. What does each regress to?
#
# `lab.probes.targets(method, t)` returns, at points x_t, the teacher's own one-shot prediction and the method's
# regression target. Consistency and sCM regress to a clean-sample estimate (x0 space): the blue arrows are the teacher's
# one-jump x̂0, the blurry posterior mean; the green ones are where the method says the trajectory through x_t really
# ends. The shortcut model regresses to a *velocity* for a step of size d: the average of two half-steps.

# %%
for name, m in methods.items():
    tg = lab.probes.targets(m, t=0.6)
    lab.viz.targets_figure(tg, title=f"{name}: targets at t = 0.6 ({tg['space'].iloc[0]} space, on {tg['on'].iloc[0]})").show()

# %% [markdown]
# The continuous-time method has no discretisation: its "target" is built from the tangent df/dt. sCM's two
# stabilisers are visible as probe data: the **tangent norm** before normalisation (g / (‖g‖ + c) keeps the update bounded
# where the tangent explodes, near t = π/2) and the learned **adaptive weight** e^{-logvar(t)}, which rebalances the loss
# over noise levels.

# %%
import lab.probes.scm
import lab.viz.scm

internals = lab.probes.scm.scm_internals(methods["scm"])
lab.viz.scm.scm_internals_figure(internals).show()
internals.describe().loc[["min", "max"]]

# %% [markdown]
# ## 3. One model, many step counts
#
# Every student here serves several step counts with the same weights. Same noise for all, distance to the same fresh
# data; the teacher at the same number of steps is the baseline, the teacher at 50 steps the target.

# %%
rows = []
floor = lab.metrics.noise_floor(source, 4000)
for name, gen in {"teacher": teacher, **{k: m.generator() for k, m in methods.items()}}.items():
    for nfe in (1, 2, 4, 8):
        if name != "teacher" and nfe not in gen.native_nfe:
            continue
        rows.append({"model": name, "nfe": nfe, "swd": sliced_wasserstein(gen.sample(z=z, nfe=nfe, seed=SEED).x, ref),
                     "swd_floor": floor})
t50 = sliced_wasserstein(teacher.sample(z=z, nfe=50, seed=SEED).x, ref)
nfe_table = pd.DataFrame(rows)
print(f"teacher @50: {t50:.4f}   noise floor: {floor:.4f}")
lab.viz.distance_vs_nfe_figure(nfe_table).show()
nfe_table.pivot(index="nfe", columns="model", values="swd").round(4)

# %% [markdown]
# ## 4. Paths and straightness
#
# Straightness is 0 for a path travelled in a straight line at constant speed. The teacher's ODE paths bend where they
# commit to a mode. The shortcut student takes k **Euler steps** of size 1/k with the step size as an input, so its
# paths are real paths: compare its 8-step path with the teacher's 50-step path from the same noise. (The consistency
# samplers jump to x0 and re-noise between steps, so their "paths" zig-zag by design; their straightness is not
# comparable.)

# %%
paths, straight = lab.probes.trajectories(teacher, methods["shortcut"].generator(), teacher_nfe=50, student_nfe=8, seed=SEED)
lab.viz.trajectories_figure(paths, straight).show()
straight

# %%
paths_cd, straight_cd = lab.probes.trajectories(teacher, methods["consistency"].generator(), teacher_nfe=50, student_nfe=4, seed=SEED)
lab.viz.trajectories_figure(paths_cd, straight_cd).show()

# %% [markdown]
# ## Exercises
#
# 1. **Tangent warm-up.** sCM ramps the second part of its tangent in over `warmup` steps. Set `{"warmup": 1}` and look
#    at the training losses (`lab.runs.Recorder`) and the tangent norms. What does the warm-up protect against?
# 2. **Discrete vs continuous.** Consistency with `n_intervals` = 4, 16, 64 approaches the continuous-time limit that
#    sCM trains directly. Plot the 1-step distance against `n_intervals`.
# 3. **Self-consistency share.** The shortcut model spends `bootstrap_frac` (1/4) of each batch on self-consistency.
#    Try 0 (only the teacher's velocity: a distilled flow, which is poor at 1 step) and 0.5.
# 4. **rCM.** `lab.get_method("rcm")` adds a DMD-style term to sCM. Compare the share of samples between modes
#    (`lab.metrics.low_density_share(x, source.gmm)`) for `scm` and `rcm` at 1 step.
