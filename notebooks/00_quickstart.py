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
# # 00 · Quickstart: teachers, students, NFE and distillation
#
# A diffusion or flow-matching model (the **teacher**) makes a sample by integrating an ODE from noise to data in many
# small steps; every step is one network call, so a good sample costs tens of *function evaluations* (**NFE**).
# **Distillation** trains a **student** that gets (almost) the same samples in 1 to 4 steps. The lab runs this on 2D
# toy data on a CPU so that every piece can be looked at: a zoo of trained teachers and students (`lab.zoo`), methods
# behind one interface (`lab.get_method`), a training loop you iterate yourself (`lab.distill`), and *probes*
# (`lab.probes`, returning DataFrames) that `lab.viz` turns into plotly figures. The second half of the workshop
# (notebooks 01-04) distils classifiers instead: there a "student" is a smaller network, not a faster sampler.
#
# **Learning goals.** After this notebook you can:
# 1. load a teacher and a student from the zoo and sample both at any NFE;
# 2. measure how far samples are from the data (sliced Wasserstein distance) and judge it against the noise floor;
# 3. train a distillation method for a few hundred steps with `lab.distill` and read its loss curve;
# 4. open the matching comparison in the app (the links below) and say what each page shows.
#
# **In the app:** [the teacher and students from the same noise](http://localhost:8501/Generators?dist=8gaussians&students=consistency&students=reflow&students=progressive&tnfe=50) ·
# [distil consistency live](http://localhost:8501/Distill_live?dist=8gaussians&method=consistency) ·
# [knowledge distillation of a classifier](http://localhost:8501/Knowledge_distillation?task=digits&method=kd&n_train=200) ·
# [the digits images](http://localhost:8501/Digits) · [your run folders](http://localhost:8501/Runs)
# (start the app with `make demo`).

# %% tags=["parameters"]
FAST = False  # True: the test suite's quick mode (fewer points, shorter training); False: the workshop run

# %%
import time

import pandas as pd
import torch

import lab
import lab.probes  # `import lab` does not load probes and viz
import lab.viz
import workshop
from lab.runs import Recorder

# The toy networks are tiny: one CPU thread is about as fast as several for them,
# and much faster when other programs compete for the cores.
torch.set_num_threads(1)
SEED = 0
DATA = "toy2d:8gaussians"
N = 500 if FAST else 2000        # points per sample
STEPS = 150 if FAST else 600     # distillation steps in section 2
source = lab.data.toy2d.get("8gaussians")
print("lab", lab.__version__, "|", source.description)
print("step-distillation methods:", ", ".join(lab.list_methods()))
print("knowledge-distillation methods:", ", ".join(lab.kd.list_methods()))

# %% [markdown]
# ## 1. The teacher, and what NFE costs
#
# `lab.zoo.load` returns a *generator*: anything with `.sample(n, nfe=..., seed=...)`. The 8-Gaussians teacher is a
# small MLP trained by flow matching; its weights ship in `assets/zoo`, so loading it is instant. Its model card
# records how it was trained.

# %%
teacher = lab.zoo.load("toy2d/8gaussians/teacher")
card = teacher.card  # the model card stored next to the weights (model.json)
print(type(teacher).__name__, "| process:", teacher.denoiser.process.name, "| predicts:", teacher.denoiser.pred)
print("recipe:", card["recipe"]["trainer"], card["recipe"]["config"]["steps"], "steps,", card["train_seconds"], "s")
card["metrics"]

# %% [markdown]
# For a Gaussian mixture the ideal denoiser is known in closed form (the exact posterior mean E[x0 | x_t]). The
# **analytic** teacher uses it: no weights, no training error, so everything that goes wrong with it comes from
# taking too few steps.
#
# How far are the samples from the data as we give the teachers fewer steps? We measure the sliced Wasserstein
# distance (SWD) to fresh draws of data, averaged over three reference draws (one distance wobbles by about ±20%
# from draw to draw). The **noise floor** is the same distance between two fresh draws of data: a generator near the
# floor cannot be told apart from the data at this sample size.

# %%
analytic = lab.zoo.load("toy2d/8gaussians/analytic")
refs = [source.sample(N, 1000 + r) for r in range(3)]  # fresh data, never seen by a teacher
floor = lab.metrics.noise_floor(source, N, reps=5)


def swd(x) -> float:
    """Sliced Wasserstein distance of the points x to the data, averaged over the reference draws."""
    return sum(lab.metrics.sliced_wasserstein(x, ref) for ref in refs) / len(refs)


rows = [{"model": name, "nfe": nfe, "swd": swd(gen.sample(N, nfe=nfe, seed=SEED).x), "swd_floor": floor}
        for name, gen in {"teacher": teacher, "analytic": analytic}.items() for nfe in (1, 2, 4, 8, 32)]
nfe_table = pd.DataFrame(rows)
print(f"noise floor: {floor:.3f}")
nfe_table.pivot(index="nfe", columns="model", values="swd").round(3)

# %%
lab.viz.distance_vs_nfe_figure(nfe_table).show()
t_swd = nfe_table[nfe_table.model == "teacher"].set_index("nfe")["swd"]
assert t_swd[1] > 2 * t_swd[8], f"one Euler step should be far worse than eight: {t_swd[1]:.3f} vs {t_swd[8]:.3f}"

# %% [markdown]
# With one Euler step both teachers jump to the *average* of all the data that could have produced the noise, near
# the centre and far from every mode. By 4 to 8 steps they are near the noise floor. Even the exact teacher needs
# several steps, so this gap is a property of ODE sampling, not of a badly trained network. Closing it at 1 to 4 NFE
# is the student's job.

# %% [markdown]
# ### Exercise 00.1: how many steps does the teacher need?
#
# **Find:** the fewest teacher steps (NFE) whose samples are within 1.5 times the noise floor of the data. Try the
# powers of two: 1, 2, 4, 8, ...
#
# **Check:** the teacher's distance to data at your NFE is within 1.5 times the noise floor, and at half that NFE it is not

# %%
nfe = None          # your NFE (2 or more)
swd_at_nfe = None   # swd(teacher.sample(N, nfe=nfe, seed=SEED).x)
swd_at_half = None  # the same at nfe // 2
workshop.check("00.1", nfe=nfe, swd_at_nfe=swd_at_nfe, swd_at_half=swd_at_half, floor=floor)

# %% [markdown]
# ## 2. Distil: a consistency student
#
# **Consistency distillation** (Song et al. 2023): the student maps any point of a teacher ODE trajectory straight to
# the trajectory's origin; it is trained so that two adjacent points (one teacher step apart) map to the same output.
# A method is built from a teacher, a data source and a config dict; `lab.distill(method)` is a plain Python
# generator that yields the loop state after every step, so you decide what to log, plot or stop on. Callbacks plug
# into it: a `Recorder` keeps a tidy row of losses every few steps.
#
# This run is short (`STEPS`); the zoo student `lab.zoo.load("toy2d/8gaussians/consistency")` used the full
# default config printed below.

# %%
M = lab.get_method("consistency")
print(f"{M.paper}\n  mechanism: {M.mechanism}\n  default config: {M.Config()}")

# %%
m1 = lab.get_method("consistency")(teacher, DATA, {"steps": STEPS}, seed=SEED)
rec = Recorder(every=10)
t0 = time.perf_counter()
for state in lab.distill(m1, callbacks=[rec]):
    pass
print(f"consistency: {m1.it} steps in {time.perf_counter() - t0:.1f} s")
lab.viz.metrics_figure(rec.frame()).show()

# %% [markdown]
# ## 3. Compare with the probes
#
# **Same noise, every model.** `sample_panels` feeds the same noise to the teacher (50 steps) and to each student at
# 1, 2 and 4 steps, and reports each panel's distance to fresh data and its time. Next to your student: three zoo
# students, trained with the methods' full configs (notebook 06 explains them). With a single reference draw,
# differences of a few hundredths in SWD are noise: look at the gap to the 1-step teacher.

# %%
students = {"my consistency": m1.generator(),
            **{name: lab.zoo.load(f"toy2d/8gaussians/{name}") for name in ("consistency", "reflow", "progressive")}}
panels = lab.probes.sample_panels(teacher, students, source, n=N, seed=SEED)
lab.viz.sample_panels_figure(panels).show()
lab.probes.panel_summary(panels).round(4)

# %% [markdown]
# ### Exercise 00.2: what does distillation buy?
#
# **Find:** the largest teacher NFE that the one-step consistency student still beats by more than a factor of two
# (what distillation buys). Use the zoo student `students["consistency"]` and the `swd` helper of section 1; try the
# teacher at 1, 2, 4, 8 steps.
#
# **Check:** the teacher at your NFE is more than twice as far from the data as the 1-step student, and at twice your NFE it is not

# %%
student_1 = None          # swd(students["consistency"].sample(N, nfe=1, seed=SEED).x)
teacher_at_nfe = None     # the teacher's swd at your NFE
teacher_at_double = None  # ... and at twice your NFE
workshop.check("00.2", student_1=student_1, teacher_at_nfe=teacher_at_nfe, teacher_at_double=teacher_at_double)

# %% [markdown]
# **Paths.** `trajectories` draws the teacher's ODE paths and a student's Euler steps from the same noise.
# Straightness is 0 for a straight path travelled at constant speed: the teacher's paths bend (most visibly near the
# end, where each commits to a mode); the zoo **reflow** student (Liu et al. 2023: retrain the flow on straight lines
# between noise and the teacher's samples) is nearly straight, which is why a few Euler steps are enough.

# %%
paths, straight = lab.probes.trajectories(teacher, students["reflow"], teacher_nfe=50, student_nfe=4, seed=SEED)
lab.viz.trajectories_figure(paths, straight).show()
straight

# %% [markdown]
# **Targets: what is the student regressed to?** `lab.probes.targets(method, t)` asks a method for its regression
# target at noise level t, next to the teacher's own prediction there. For consistency the target is a clean-sample
# estimate (x0 space): from x_t take one teacher ODE step, then apply the slowly moving target network. Blue arrows:
# the teacher's one-shot estimate x̂0, the blurry posterior mean. Green: the consistency target. On a fresh method the
# student is a copy of the teacher, so the target is almost the teacher's x̂0; after training it has moved towards
# where the teacher's trajectory actually ends.

# %%
lab.viz.targets_figure(lab.probes.targets(m1, t=0.5)).show()


def gap(df, a="target", b="teacher"):
    return float(((df[f"{a}_x"] - df[f"{b}_x"]) ** 2 + (df[f"{a}_y"] - df[f"{b}_y"]) ** 2).pow(0.5).mean())


fresh = lab.get_method("consistency")(teacher, DATA, {"steps": STEPS}, seed=SEED)
gaps = {"untrained": gap(lab.probes.targets(fresh, t=0.5)), f"after {m1.it} steps": gap(lab.probes.targets(m1, t=0.5))}
pd.Series(gaps, name="mean |target - teacher x̂0|").round(3).to_frame()

# %% [markdown]
# ### Exercise 00.3: did the short run help?
#
# **Find:** whether the short distillation run of section 2 already helped the student: compare the 1-step samples of
# `m1.generator()` with those of the untrained `fresh.generator()`.
#
# **Check:** your trained student's 1-step distance to data is below three quarters of the untrained student's

# %%
trained_1 = None    # swd of m1's 1-step samples
untrained_1 = None  # swd of fresh's 1-step samples
workshop.check("00.3", trained_1=trained_1, untrained_1=untrained_1)

# %% [markdown]
# ## 4. The app tour
#
# `make demo` starts the explorer (`http://localhost:8501`). Every setting of a page is in its address, so the links
# in these notebooks open the exact comparison.
#
# - **[Generators](http://localhost:8501/Generators?dist=8gaussians&students=consistency&students=reflow&tnfe=50)**:
#   what you did in section 3 for any zoo distribution and student: same-noise panels, quality against NFE, paths
#   (animated), and *inside* views of each method's auxiliary networks.
# - **[Digits](http://localhost:8501/Digits)**: the same for an image teacher (an 8x8-digits UNet), with the x̂0 view
#   and guidance (notebook 09).
# - **[Knowledge distillation](http://localhost:8501/Knowledge_distillation?task=digits&method=kd&n_train=200)**: a KD
#   method trained live against `scratch` and plain `kd`, the divergence explorer, where the student and the teacher
#   disagree (notebooks 01-04).
# - **[Distill live](http://localhost:8501/Distill_live?dist=8gaussians&method=consistency)**: train any 2D method
#   step by step with its hyperparameters, on zoo data or on points you draw.
# - **[Runs](http://localhost:8501/Runs)**: the run folders written by `lab distill` / `lab kd run`, their curves and
#   snapshots.

# %% [markdown]
# ## Recap
#
# - A teacher needs several ODE steps (NFE) to reach the data; one Euler step lands on the blurry posterior mean.
# - A distilled student gets close to the noise floor in 1-2 steps: the teacher needs about 4 steps for the same.
# - `lab.get_method(name)(teacher, data, config, seed)` builds a method; `lab.distill` is a generator you iterate.
# - Probes (`lab.probes.sample_panels`, `trajectories`, `targets`) return tables; `lab.viz` draws them.
# - Every comparison has a link into the app; its address holds every setting.
