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
# # Images: distilling a digits teacher
#
# The same methods that distil 2D point clouds work on images. Here the data are the 8x8 handwritten digits of
# scikit-learn (1437 training images, 360 test images, pixels scaled to [-1, 1]) and the teacher is a small
# **class-conditional UNet** (a diffusers `UNet2DModel` of about a million parameters) trained by flow matching on the same
# process as before, $x_t = (1 - t)\,x_0 + t\,\epsilon$, predicting the velocity $v = \epsilon - x_0$. The label enters
# the UNet added to its time embedding; during training it was dropped 10% of the time, so the same network is also an
# *unconditional* model, which is what classifier-free guidance needs (section 4).
#
# This notebook loads the teacher and the distilled students from the zoo, compares them from the same noise and labels,
# looks at what each model *predicts* along the way (the diffusion-target view), sweeps the guidance weight, reads the
# image metrics from the model cards, and ends with a short live distillation. It runs top to bottom in about a minute
# on a laptop CPU.

# %%
import time

import numpy as np
import pandas as pd
import torch

import lab
import lab.viz
from lab.metrics import images as im
from lab.probes import images as probes
from lab.runs import Recorder
from lab.runs.loop import ProgressBar
from lab.viz import images as viz

torch.set_num_threads(1)  # small networks: one thread is about as fast, and kind to a shared laptop
SEED = 0
digits = lab.data.resolve("digits")
print(f"{len(digits.x)} training images of shape {digits.shape}, {digits.n_classes} classes, "
      f"pixels in [{float(digits.x.min()):.0f}, {float(digits.x.max()):.0f}]")
x, y = digits.sample(10, SEED, labelled=True)
viz.image_grid_figure(x[None].numpy(), ["data"], [f"label {int(k)}" for k in y], title="Training digits").show()

# %% [markdown]
# ## 1. The teacher and the students
#
# `lab.zoo.load` returns a ready generator from `assets/zoo` (or the user cache). `train_if_missing=False` makes a missing
# entry an error instead of a long training run. The students were distilled from this teacher with the zoo's digits
# recipes (`lab.zoo.image_student_methods()`); any that are not built yet are listed, with the command that builds them.

# %%
teacher = lab.zoo.load("digits/teacher", train_if_missing=False, progress=False)
card = teacher.card
print(type(teacher).__name__, "| net:", type(teacher.denoiser.net).__name__,
      f"{sum(p.numel() for p in teacher.denoiser.net.parameters()) / 1e6:.2f} M parameters",
      "| classes:", probes.n_classes_of(teacher))
recipe = card.get("recipe", {})
print("recipe:", recipe.get("trainer"), recipe.get("config", {}).get("steps"), "steps,", card.get("train_seconds"), "s")

students, missing = {}, []
for method in lab.zoo.image_student_methods():
    entry = f"digits/{method}"
    if lab.zoo.find(entry) is None:
        missing.append(method)
    else:
        students[method] = lab.zoo.load(entry, train_if_missing=False, progress=False)
print("students:", {m: tuple(g.native_nfe) for m, g in students.items()} or "none")
if missing:
    print("not built yet:", ", ".join(missing), "-> python bench/digits.py --zoo   (or: lab zoo build)")

# %% [markdown]
# ## 2. Few steps, same noise, same labels
#
# `sample_grid` feeds the same noise and the same labels (0 to 9) to every row: the teacher at 50 Euler steps, the *same
# teacher* at 1, 2 and 4 steps (what a few steps give without distillation), then each student at the step counts it
# was trained for. With one step the teacher jumps straight to its x0 prediction at pure noise: the *average* of all
# digits with that label, a blur. The students have to put a sharp, legible digit there instead.

# %%
grid = probes.sample_grid(teacher, students, teacher_nfe=50, n=10, seed=SEED)
viz.sample_grid_figure(grid).show()

# %% [markdown]
# ## 3. The diffusion-target view
#
# A sampler only shows its current noisy state $x_t$, which says little until the very end. At every step the model
# also makes a prediction of the *finished* image, $\hat x_0(x_t, t)$ (for a velocity model $\hat x_0 = x_t - t\,v$).
# Gandikota & Bau, *Distilling Diversity and Control in Diffusion Models* (2025), call this the **diffusion target** and
# plot it at every step. Their finding, for text-to-image models: the target at the **first step already fixes the
# composition**, and later steps only refine it. Distilled few-step students commit to that composition in one
# prediction and lose variety (mode collapse); they restore it by running the *teacher* for the first step and the
# student for the rest, at almost the student's cost.
#
# `x0_views` shows this for the teacher (8 steps) and the consistency student (4 steps) from the same noise and labels.
# Per sample, the top row is $x_t$ (ending with the final sample at $t = 0$) and the row below is $\hat x_0$ at that
# step. For the consistency student $\hat x_0$ *is* the output of the consistency function; its sampler re-noises that
# prediction to the next time and predicts again.

# %%
pair = {"consistency": students["consistency"]} if "consistency" in students else {}
if not pair:
    print("no consistency student in the zoo: showing the teacher only")
views = probes.x0_views(teacher, pair, nfe_teacher=8, nfe_student=4, labels=[0, 3, 5, 8], n=4, seed=SEED)
viz.x0_view_figure(views).show()
first = {m: float(np.abs(v["x0"][0] - v["final"]).mean()) for m, v in views.items()}
print("mean |x̂0 at the first step - final sample| (pixels in [-1, 1]):", {m: round(d, 3) for m, d in first.items()})

# %% [markdown]
# Read the teacher's $\hat x_0$ row from left to right: at $t = 1$ it is the blurry class average (the posterior
# mean given only the label), and the identity and stroke layout of the digit settle within the first few steps, well
# before $x_t$ looks like anything. The number printed above is how far the first prediction is from the final sample:
# expect it large for the teacher (it still has 7 steps to decide) and smaller for a consistency student, whose first
# prediction has to be close to the answer already.
#
# ## 4. Guidance weight
#
# Classifier-free guidance extrapolates from the unconditional velocity towards the conditional one,
# $v = v_u + w\,(v_c - v_u)$: $w = 0$ ignores the label, $w = 1$ is the plain conditional model, and $w > 1$ exaggerates
# what makes a digit *this* digit, trading variety for legibility. The teacher pays two network passes per step for it.
# A **guidance-distilled** student (Meng et al. 2023) takes $w$ as an extra input and pays one.

# %%
WS = (0.0, 1.0, 2.0, 4.0)
viz.guidance_grid_figure(probes.guidance_grid(teacher, ws=WS, nfe=8, n=10, seed=SEED)).show()
if "guidance" in students:
    viz.guidance_grid_figure(probes.guidance_grid(students["guidance"], ws=WS, nfe=4, n=10, seed=SEED)).show()
else:
    print("no guidance student in the zoo (python bench/digits.py --zoo builds it)")

# %% [markdown]
# ## 5. Metrics
#
# Pixels are a poor space for comparing image distributions, so the lab scores samples on the features of a small
# **local** digits network (nothing is downloaded), the recipe of FID and KID on a tiny scale:
#
# * **FD-digits**: Fréchet distance between Gaussian fits of the features of samples and of the test split (lower is better;
#   biased upwards for small sets, so compare at the same sample size);
# * **KID**: an unbiased kernel distance on the same features (lower is better, can dip below 0);
# * **accuracy**: the share of samples that a *separate* classifier reads as the label they were asked for;
# * **diversity**: mean feature distance between samples of the same class (collapse shows up as a drop).
#
# Every zoo entry's model card holds these numbers at each NFE it serves (1000 samples, labels 0 to 9 cycled). The
# **noise floor** scores 1000 real training digits as if they were samples: that is what perfect samples get at this size.

# %%
KEYS = ("fd", "kid", "accuracy", "diversity")
rows = []
for model in ["teacher", *students]:
    m = lab.zoo.card(f"digits/{model}").get("metrics", {})
    for nfe in sorted({int(k.split("@")[1]) for k in m if k.startswith("fd@")}):
        rows.append({"model": model, "nfe": nfe, **{k: m.get(f"{k}@{nfe}") for k in KEYS}})
floor = im.noise_floor("digits", n=1000)  # measured now: the train split against the test split
rows.append({"model": "noise floor", "nfe": None, **{k: floor.get(k) for k in KEYS}})
metrics = pd.DataFrame(rows).astype({"nfe": "Int64"}).set_index(["model", "nfe"])
metrics.round(3)

# %% [markdown]
# Compare each student's row with the teacher's row at the **same** NFE (what those steps give without distillation)
# and with the teacher at 50 (the target). `bench/digits.py` measures more methods and records the time each took to
# distil.
#
# ## 6. A short live distillation
#
# Consistency distillation (Song et al. 2023), 30 steps from the teacher, here and now: draw a digit, noise it to
# $x_{t_{n+1}}$, take one teacher ODE step to $t_n$, and train the student so that its prediction at $x_{t_{n+1}}$ matches
# a slowly moving (EMA) copy of itself at the teacher's next point. The student starts as a copy of the teacher, so its
# first predictions along one trajectory disagree exactly as much as the teacher's $\hat x_0$ do between adjacent steps;
# training makes them agree.

# %%
m = lab.get_method("consistency")(teacher, "digits", {"steps": 30, "batch": 32, "lr": 1e-4, "n_intervals": 18,
                                                       "target_ema": 0.95}, seed=SEED)
rec = Recorder(every=1)
t0 = time.perf_counter()
for state in lab.distill(m, callbacks=[rec, ProgressBar("consistency on digits")]):
    pass
print(f"{m.it} steps in {time.perf_counter() - t0:.1f} s; the zoo student's recipe:",
      lab.zoo.image_student_recipes()["consistency"])
log = rec.frame()
loss = log["loss/consistency"]
print(f"mean loss, first 10 steps {loss.iloc[:10].mean():.4g} -> last 10 steps {loss.iloc[-10:].mean():.4g}")
lab.viz.metrics_figure(log.assign(**{"loss/consistency (rolling mean of 5)": loss.rolling(5, min_periods=1).mean()})).show()

# %%
live = probes.sample_grid(teacher, {"live (30 steps)": m.generator(), **pair}, teacher_nfe=50, student_nfe=(1, 2),
                          n=10, seed=SEED)
viz.sample_grid_figure(live).show()

# %% [markdown]
# Thirty steps move the student only a little away from the teacher's one-step blur; compare with the zoo's
# consistency student (its rows, when it is built), distilled with the full recipe printed above.
#
# ## Exercises
#
# 1. **Diversity at one step.** Sample 100 digits of one class (`y = torch.full((100,), 3)`) from the teacher at 50
#    steps and from each student at 1 step, and compare `im.diversity(x, y)`. Which students collapse? Then try the
#    paper's hybrid: one teacher Euler step by hand to t = 0.75,
#    `x = z - 0.25 * teacher.denoiser.velocity(z, torch.ones(100), y)`, and let the consistency student finish in one
#    prediction, `students["consistency"].denoiser.x0(x, torch.full((100,), 0.75), y)`. Does the diversity come back?
# 2. **Guidance for free?** Put the guidance student's samples at `w = 4` (one pass per step) next to the teacher's
#    (two passes per step) in `image_metrics`: what does the extra pass buy?
# 3. **Longer live run.** Run section 6 with 200 steps and `lr=1e-4`: when does the one-step FD-digits
#    (`im.image_metrics(m.generator().sample(500, nfe=1, y=torch.arange(500) % 10).x, torch.arange(500) % 10)`) drop
#    below the teacher's one-step value from the table?
