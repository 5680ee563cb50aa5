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
# # Distillation Lab: quickstart
#
# A diffusion or flow-matching model (the **teacher**) makes a sample by integrating an ODE from noise to data
# in many small steps; every step is one network call, so a good sample costs tens of *function evaluations* (NFE).
# **Step distillation** trains a **student** that gets (almost) the same samples in 1 to 4 steps.
#
# The lab runs this on 2D toy data on a CPU, so that every piece can be looked at:
# a zoo of teachers, distillation methods behind one interface (`lab.get_method`), a training loop you iterate
# yourself (`lab.distill`), and *probes* (`lab.probes`) that compare teacher and students from the same noise and show
# what each method regresses its student to. Probes return DataFrames; `lab.viz` turns them into plotly figures.
#
# The whole notebook runs top to bottom in about a minute on a laptop CPU.

# %%
import time

import pandas as pd
import torch

import lab
import lab.probes  # `import lab` does not load probes and viz
import lab.viz
from lab.runs import Recorder

# The toy networks are tiny: one CPU thread is about as fast as several for them,
# and much faster when other programs compete for the cores.
torch.set_num_threads(1)
SEED = 0
DATA = "toy2d:8gaussians"
source = lab.data.toy2d.get("8gaussians")
print("lab", lab.__version__, "| methods:", ", ".join(lab.list_methods()), "|", source.description)

# %% [markdown]
# ## 1. The teacher
#
# `lab.zoo.load` returns a *generator*: anything with `.sample(n, nfe=..., seed=...)`. The 8-Gaussians teacher is a small
# MLP trained by flow matching; its weights ship with the lab in `assets/zoo`, so loading it is instant. Its model card
# records how it was trained.

# %%
teacher = lab.zoo.load("toy2d/8gaussians/teacher")
card = teacher.card  # the model card stored next to the weights (model.json)
print(type(teacher).__name__, "| process:", teacher.denoiser.process.name, "| predicts:", teacher.denoiser.pred)
print("recipe:", card["recipe"]["trainer"], card["recipe"]["config"]["steps"], "steps,", card["train_seconds"], "s")
card["metrics"]

# %% [markdown]
# For a Gaussian mixture the ideal denoiser is known in closed form (the exact posterior mean E[x0 | x_t]).
# The **analytic** teacher uses it: it has no weights and no training error, so everything that goes wrong with it
# comes from taking too few steps (or, later, from the distillation method).
#
# How far are the teachers' samples from the data as we give them fewer steps? We measure the sliced Wasserstein distance
# (SWD) to fresh draws of data. The *noise floor* is the same distance between two fresh draws of data: a generator at the
# floor cannot be told apart from the data at this sample size. With 2000 points a single distance wobbles by about ±20%
# from one data draw to the next, so we average over five reference draws (and ten for the floor).

# %%
analytic = lab.zoo.load("toy2d/8gaussians/analytic")

N = 2000
refs = [source.sample(N, 1000 + r) for r in range(5)]  # fresh data, never seen by a teacher
floor = lab.metrics.noise_floor(source, N, reps=10)
rows = []
for name, gen in {"teacher": teacher, "analytic": analytic}.items():
    for nfe in (1, 2, 4, 8, 50):
        x = gen.sample(N, nfe=nfe, seed=SEED).x
        swd = sum(lab.metrics.sliced_wasserstein(x, ref) for ref in refs) / len(refs)
        rows.append({"model": name, "nfe": nfe, "swd": swd, "swd_floor": floor})
nfe_table = pd.DataFrame(rows)
print(f"noise floor: {floor:.3f}")
nfe_table.pivot(index="nfe", columns="model", values="swd").round(3)

# %%
lab.viz.distance_vs_nfe_figure(nfe_table).show()

# %% [markdown]
# With one Euler step both teachers jump straight to the *average* of all the data that could have produced the noise,
# which is close to the centre, far from every mode: the distance is large. By 4 to 8 steps they are near the noise
# floor. Even the exact teacher needs several steps, so this gap is a property of ODE sampling, not of a badly trained
# network. Closing it at 1 to 4 NFE is the student's job.
#
# ## 2. Distil with two methods
#
# * **consistency** (Song et al. 2023): the student maps any point of a teacher ODE trajectory straight to the trajectory's
#   origin; it is trained so that two adjacent points (one teacher step apart) map to the same output.
# * **reflow** (Liu et al. 2023): draw noise, run the teacher's ODE to get (noise, sample) pairs, retrain the flow on
#   straight lines between the pairs (its paths straighten), then distil it to a single step.
#
# A method is built from a teacher, a data source and a config dict; `lab.distill(method)` is a plain Python generator
# that yields the loop state after every step, so you decide what to log, plot or stop on. Callbacks plug into it: a
# `Recorder` keeps a tidy row of losses every few steps.
#
# To keep this notebook fast we train for only 300 steps (and reflow on 4000 pairs). The zoo students
# (`lab.zoo.load("toy2d/8gaussians/consistency")` and so on) use the full default configs shown below.
# Both runs use the same seed.

# %%
for name in ("consistency", "reflow"):
    M = lab.get_method(name)
    print(f"{name}: {M.paper}\n  mechanism: {M.mechanism}\n  default config: {M.Config()}\n")

# %%
m1 = lab.get_method("consistency")(teacher, DATA, {"steps": 300}, seed=SEED)
rec1 = Recorder(every=10)
log1 = []
t0 = time.perf_counter()
for state in lab.distill(m1, callbacks=[rec1]):
    if state.it % 50 == 0:
        log1.append({"step": state.it, "stage": state.out.stage, **state.out.losses})
print(f"consistency: {m1.it} steps in {time.perf_counter() - t0:.1f} s")
pd.DataFrame(log1)

# %%
m2 = lab.get_method("reflow")(teacher, DATA, {"steps": 300, "n_pairs": 4000, "pair_steps": 32}, seed=SEED)
rec2 = Recorder(every=10)
log2 = []
t0 = time.perf_counter()
for state in lab.distill(m2, callbacks=[rec2]):  # the first step integrates the teacher ODE to make the pairs
    if state.it % 50 == 0:
        log2.append({"step": state.it, "stage": state.out.stage, **state.out.losses})
print(f"reflow: {m2.it} steps in {time.perf_counter() - t0:.1f} s")
pd.DataFrame(log2)

# %% [markdown]
# The recorders hold one row every 10 steps. Reflow has two stages (reflow, then one-step distillation for the last
# `distill_frac` = 40% of the steps), hence two loss columns. The losses measure different things, so compare each curve's
# trend, not the curves with one another.

# %%
curves = rec1.frame()[["step", "loss/consistency"]].merge(
    rec2.frame()[["step", "loss/reflow", "loss/distill"]], on="step", how="outer")
lab.viz.metrics_figure(curves).show()

# %% [markdown]
# ## 3. Compare with the probes
#
# **Same noise, every model.** `sample_panels` feeds the same noise to the teacher (50 steps) and to each student at 1, 2
# and 4 steps, and reports each panel's distance to fresh data and the time it took. Compare the students at 1 NFE with
# the teacher at 1 NFE in the table of section 1. With 1000 points and one reference draw, differences of a few hundredths
# in SWD are within the draw-to-draw noise: look at the gap to the 1-step teacher, not at the third decimal.

# %%
students = {"consistency": m1.generator(), "reflow": m2.generator()}
panels = lab.probes.sample_panels(teacher, students, source, n=1000, seed=SEED)
lab.viz.sample_panels_figure(panels).show()

# %%
lab.probes.panel_summary(panels).round(4)

# %% [markdown]
# **Paths.** `trajectories` draws the teacher's ODE paths and the reflow student's 4 Euler steps from the same noise.
# Straightness is 0 for a straight path travelled at constant speed: the teacher's paths bend (most visibly near the end,
# where each commits to a mode), the reflowed ones are nearly straight, which is why a few Euler steps are enough.
# (The consistency sampler jumps to data and re-noises between steps, so its 'paths' are not ODE paths.)

# %%
paths, straight = lab.probes.trajectories(teacher, m2.generator(), teacher_nfe=50, student_nfe=4, seed=SEED)
lab.viz.trajectories_figure(paths, straight).show()
straight

# %% [markdown]
# A coarse path hides bends, so compare at equal resolution too: the reflowed flow integrated with 50 steps.

# %%
lab.probes.trajectories(teacher, m2.generator(), teacher_nfe=50, student_nfe=50, seed=SEED)[1]

# %% [markdown]
# **Targets: what is the student regressed to?** `lab.probes.targets(method, t)` asks a method for its regression
# target at noise level t, next to the teacher's own prediction there. For consistency the target is a clean-sample
# estimate (x0 space): from x_t take one teacher ODE step, then apply the slowly moving target network. It depends on x_t
# only, so the probe evaluates it on a grid. Blue arrows: the teacher's one-shot estimate x̂0, the blurry posterior mean.
# Green: the consistency target.

# %%
tg1 = lab.probes.targets(m1, t=0.5)
lab.viz.targets_figure(tg1).show()


# %% [markdown]
# `targets()` works without training, too. On a fresh method the student and its target network are copies of the
# teacher, so the target is almost the teacher's x̂0; after training it has moved away from the one-shot estimate
# towards where the teacher's trajectory actually ends.

# %%
def gap(df, a="target", b="teacher"):
    return float(((df[f"{a}_x"] - df[f"{b}_x"]) ** 2 + (df[f"{a}_y"] - df[f"{b}_y"]) ** 2).pow(0.5).mean())

fresh = lab.get_method("consistency")(teacher, DATA, {"steps": 300}, seed=SEED)
tg0 = lab.probes.targets(fresh, t=0.5)
pd.DataFrame({"mean |target - teacher x̂0|": [gap(tg0), gap(tg1)],
              "mean |student - teacher x̂0|": [gap(tg0, "student"), gap(tg1, "student")]},
             index=["untrained", f"after {m1.it} steps"]).round(3)

# %% [markdown]
# For reflow the target is a velocity (v space): z − x1, the straight line from a noise draw z to the teacher's sample
# x1 = ODE(z). It is *not* a function of x_t alone (two straight lines can cross at the same x_t), so the probe falls back
# to the method's own training inputs (`on == "data"`). Blue arrows: the teacher's velocity at the same point; green: the
# straight-line target. The reflowed flow learns the average of the green arrows through each point.

# %%
tg2 = lab.probes.targets(m2, t=0.5)
print("evaluated on:", tg2["on"].iloc[0], "| space:", tg2["space"].iloc[0])
lab.viz.targets_figure(tg2).show()

# %% [markdown]
# ## Exercises
#
# 1. **Discretisation of consistency.** Rerun consistency with `{"steps": 300, "n_intervals": 6}` and with
#    `{"steps": 300, "n_intervals": 50}` (default 18). How do the target arrows at t = 0.5 and the 1-NFE distance change?
#    Bigger teacher steps carry more information per update but more ODE error.
# 2. **Compare with progressive distillation.** Add `m3 = lab.get_method("progressive")(teacher, DATA, {"steps": 300}, seed=SEED)`,
#    train it the same way, and put `m3.generator()` into `sample_panels`. Progressive halves the teacher's steps
#    16 → 8 → 4 → 2; look at `lab.probes.targets(m3, t=0.5)` and at its loss curve across the halvings.
# 3. **An exact teacher.** Distil from `analytic` instead of `teacher`. The student cannot copy the analytic teacher's
#    weights and starts from a fresh MLP: how many more steps does it need? Any error left is now the method's own.
#
