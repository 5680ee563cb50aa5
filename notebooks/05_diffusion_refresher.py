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
# # 05 · A diffusion refresher: flow matching on 2D points
#
# Every step-distillation method in notebooks 06 to 10 starts from a **teacher**: a network that turns noise into
# data by integrating an ODE in many small steps. This notebook builds one from scratch on 2D points, small enough to
# train in seconds, and looks at the three things the later notebooks take for granted: the **noise process** that
# links data and noise, the **trajectories** the sampler follows, and the price of a good sample in network
# evaluations (**NFE**). Distillation exists because of the last plot in this notebook.
#
# **Learning goals.** After this notebook you can:
# 1. write the linear (flow-matching) noise process x_t = (1 − t) x0 + t ε and compute its velocity target ε − x0;
# 2. train a small flow-matching teacher on 2D points and read its loss curve;
# 3. sample a teacher by integrating its ODE, and read its trajectories and their straightness;
# 4. measure quality against NFE and find the step count at which a teacher stops improving.
#
# **In the app:** the zoo teacher's trajectories, animated, next to a student's jumps:
# [Generators](http://localhost:8501/Generators?dist=8gaussians&students=consistency&traj=consistency&traj_view=animated),
# and the same on a harder distribution:
# [Generators, two moons](http://localhost:8501/Generators?dist=moons&students=consistency&tnfe=50).

# %% tags=["parameters"]
FAST = False  # the test suite sets FAST = True: fewer training steps and points, same lessons

# %%
import numpy as np
import pandas as pd
import plotly.express as px
import torch

import lab
import lab.probes
import lab.viz
from lab.diffusion.process import get_process
from lab.diffusion.train import TeacherTraining
from lab.probes.quality import quality_curves
from lab.runs import Recorder
from lab.viz.animation import trajectory_animation
from lab.viz.quality import quality_vs_nfe_figure

torch.set_num_threads(1)  # toy networks: one thread is as fast, and kind to a shared laptop
SEED = 0
DATA = "toy2d:8gaussians"
N = 1000 if FAST else 2000              # points per measurement
TEACHER_STEPS = 300 if FAST else 1500   # training steps of our own teacher
source = lab.data.toy2d.get("8gaussians")
print(source.description)

# %% [markdown]
# ## 1. The noise process
#
# A noise process links a data point x0 and a Gaussian noise ε through time t ∈ [0, 1] (t = 1 is pure noise):
#
# $$x_t = \alpha(t)\,x_0 + \sigma(t)\,\varepsilon .$$
#
# The lab's teachers use the **linear** process of flow matching / rectified flow, α = 1 − t and σ = t: x_t slides
# on a straight line from the data point to its noise. Its time derivative, the **velocity**
# v = dx_t/dt = ε − x0, is what a flow-matching network learns to predict from (x_t, t). `vp_cosine` (α = cos(πt/2),
# σ = sin(πt/2)) is the variance-preserving schedule of classic diffusion models; both live in
# `lab.diffusion.process`, the one place where x0, ε, velocity and score are converted into each other.

# %%
proc = get_process("linear")
x0 = source.sample(N, torch.Generator().manual_seed(1))
eps = torch.randn(N, 2, generator=torch.Generator().manual_seed(2))
frames = []
for t in (0.0, 0.25, 0.5, 0.75, 1.0):
    xt = proc.add_noise(x0, eps, torch.full((N,), t))
    frames.append(pd.DataFrame({"x": xt[:, 0].numpy(), "y": xt[:, 1].numpy(), "t": t}))
fig = px.scatter(pd.concat(frames), x="x", y="y", facet_col="t", title="The data noised to time t (linear process)",
                 height=330)
fig.update_traces(marker_size=2).update_yaxes(scaleanchor="x").show()

ts = torch.linspace(0.001, 0.999, 99)
sched = pd.concat([pd.DataFrame({"t": ts.numpy(), "value": f(ts).numpy(), "curve": f"{p} {k}"})
                   for p in ("linear", "vp_cosine") for k, f in (("alpha", get_process(p).alpha),
                                                                  ("sigma", get_process(p).sigma))])
px.line(sched, x="t", y="value", color="curve", title="Signal α(t) and noise σ(t) of the two processes",
        height=330).show()

# %% [markdown]
# ## 2. Train a small teacher
#
# `TeacherTraining` is the lab's teacher trainer: with `pred="v"` on the linear process it is plain flow matching,
# a regression of the network's output at (x_t, t) onto ε − x0 with t uniform. The zoo teacher
# (`toy2d/8gaussians/teacher`) is the same recipe trained for 4000 steps; ours is smaller and shorter.

# %%
trainer = TeacherTraining(DATA, {"steps": TEACHER_STEPS, "batch": 512, "lr": 4e-3,
                                 "net": {"type": "mlp", "hidden": 128, "depth": 3, "t_dim": 32}}, seed=SEED)
rec = Recorder(every=10)
for _ in lab.train(trainer, callbacks=[rec]):
    pass
losses = pd.DataFrame(rec.rows)
mine = trainer.generator()
lab.viz.metrics_figure(losses).update_layout(title="Flow-matching loss of our teacher").show()
first, last = losses.filter(like="loss/").iloc[:3].mean().iloc[0], losses.filter(like="loss/").iloc[-3:].mean().iloc[0]
print(f"loss: {first:.3f} over the first logged steps, {last:.3f} over the last")

# %% [markdown]
# The loss does not go to zero, and it should not: many (x0, ε) pairs pass through the same x_t, so the best
# possible prediction is their **average** velocity, and the regression keeps the spread around it. That average is
# what makes a flow teacher's ODE well defined, and it is also why its one-step prediction is blurry (Exercise 05.3).

# %%
assert last < first, f"training did not lower the flow-matching loss ({first:.3f} -> {last:.3f})"

# %% [markdown]
# ## 3. Sampling is integrating an ODE: trajectories
#
# A sample starts from noise z at t = 1 and follows dx/dt = v(x, t) down to t = 0 (Euler steps here). With few
# steps the sampler cuts corners; with many it follows the curved paths. `lab.probes.trajectories` runs the sampler
# from the same noise and returns the paths and their **straightness** (0 = a straight line at constant speed).
# The animation lets particles glide along the 50-step paths (blue) while the same teacher at 4 steps (red) jumps.

# %%
teacher = lab.zoo.load("toy2d/8gaussians/teacher")
paths, straight = lab.probes.trajectories(teacher, teacher, n=48 if FAST else 64, teacher_nfe=50, student_nfe=4,
                                          seed=SEED)
straight = straight.assign(model=["teacher @50", "teacher @4"])
trajectory_animation(paths, straight.assign(model=["teacher", "student"])).update_layout(
    title="Zoo teacher: 50 steps (blue, glides) against 4 steps (red, jumps)").show()
straight

# %% [markdown]
# The paths bend: they leave the noise heading for the **mean** of the data (at t = 1 every mode is equally likely)
# and turn towards one mode as t falls and the noisy point commits. Curved paths are what a few-step sampler cannot
# follow, and what the trajectory methods of notebook 06 learn to shortcut (reflow straightens them outright).

# %% [markdown]
# *Fidelity note:* image teachers are trained the same way, but on pixels with a UNet and for days; the paths there
# bend just as here, and the shapes of the curves below carry over, not their numbers.

# %% [markdown]
# ## 4. Quality against NFE
#
# `quality_curves` samples each model at several step counts from the same noise and measures the sliced
# Wasserstein distance (SWD) to fresh data; the *noise floor* is that distance between two fresh draws of data, what a
# perfect generator gets at this sample size. We compare our quickly trained teacher, the zoo teacher and the
# **analytic** teacher (the exact posterior-mean denoiser of the Gaussian mixture: no network, no training error).

# %%
analytic = lab.zoo.load("toy2d/8gaussians/analytic")
nfes = (1, 2, 4, 8, 16, 32, 50) if not FAST else (1, 2, 4, 8, 16, 50)
qc = quality_curves(teacher, {"ours": mine, "analytic": analytic}, DATA, nfes=nfes, teacher_nfes=nfes, n=N,
                    seed=SEED, repeats=1)
quality_vs_nfe_figure(qc).show()
table = qc.pivot(index="nfe", columns="model", values="quality").round(4)
table

# %%
q = qc[qc.model == "teacher"].set_index("nfe").quality
assert q[50] < q[1], f"the zoo teacher at 50 NFE ({q[50]:.3f}) is not closer to the data than at 1 NFE ({q[1]:.3f})"
print(f"zoo teacher: SWD {q[1]:.3f} at 1 NFE, {q[50]:.3f} at 50 NFE (noise floor {qc.floor.iloc[0]:.3f})")

# %% [markdown]
# Every curve falls steeply over the first few steps and then flattens: the teacher needs on the order of ten network
# evaluations to be close to its best. That is the cost the rest of the curriculum removes: a distilled **student**
# aims to sit on the flat part of this curve at 1 to 4 NFE.
#
# ### Exercise 05.1: The velocity target
#
# **Find:** the flow-matching target for the linear process, and use it to walk from x_t back to the data.
# Compute the velocity v = ε − x0 with `proc.v_from_x0_eps(t, x0, eps, x0)` at t = 0.7, then reconstruct x0 as
# x_t − t·v; do the same with the wrong sign (x_t + t·v) as a baseline.
#
# **Check:** the reconstruction x_t − t·v is within 1e-5 of x0 while the wrong sign misses it by more than 0.1

# %%
import workshop

t = torch.full((N,), 0.7)
xt = proc.add_noise(x0, eps, t)
v = ...  # your code: the velocity target at (x0, eps, t)
recon_error = ...  # your code: the largest |x_t - t*v - x0|
wrong_sign_error = ...  # your code: the same with x_t + t*v
workshop.check("05.1", recon_error=recon_error, wrong_sign_error=wrong_sign_error)

# %% [markdown]
# ### Exercise 05.2: How many steps does the teacher need?
#
# **Find:** the smallest NFE at which the zoo teacher is as good as it gets. Use the `qc` table above (the rows with
# `model == "teacher"`): `quality` is the distance at each NFE.
#
# **Check:** the teacher's distance at your NFE is within 1.25x of its distance at 50 NFE, and at the next smaller NFE measured it is not

# %%
teacher_quality = ...  # your code: a dict {nfe: quality} for the teacher
nfe = ...              # your code: the smallest NFE within 1.25x of the 50-step distance
workshop.check("05.2", nfe=nfe, teacher_quality=teacher_quality)

# %% [markdown]
# ### Exercise 05.3: One step is the mean
#
# **Find:** where the teacher's one-step samples land. At t = 1, x_t is pure noise and says nothing about x0, so the
# best one-jump prediction is E[x0], the mean of the data. Sample the zoo teacher at `nfe=1` and compare the samples'
# mean distance from the origin with the data's (`x0` above).
#
# **Check:** the one-step samples' mean distance from the origin is less than half the data's

# %%
one_step_radius = ...  # your code: mean |x| of teacher.sample(N, nfe=1, seed=SEED).x
data_radius = ...      # your code: mean |x| of the data x0
workshop.check("05.3", one_step_radius=one_step_radius, data_radius=data_radius)

# %% [markdown]
# ## Recap
#
# - The linear process x_t = (1 − t) x0 + t ε joins each data point to its noise by a straight line; a flow-matching
#   teacher regresses the velocity ε − x0 at (x_t, t), and learns its average over all pairs through x_t.
# - Sampling integrates dx/dt = v from t = 1 to 0; the teacher's paths bend as each point commits to a mode.
# - A teacher's one-step sample is the blurry mean; it needs about ten or more NFE to reach its best quality.
# - Distillation (notebooks 06 to 10) trains a student to reach the flat part of the quality curve in 1 to 4 NFE.
