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
# # 09 · Images: distilling a digits teacher
#
# The same methods that distil 2D point clouds work on images. Here the data are the 8x8 handwritten digits of
# scikit-learn (1437 training images, 360 test images, pixels scaled to [-1, 1]) and the teacher is a small
# **class-conditional UNet** (a diffusers `UNet2DModel` of about a million parameters) trained by flow matching on the same
# process as before, $x_t = (1 - t)\,x_0 + t\,\epsilon$, predicting the velocity $v = \epsilon - x_0$. The label enters
# the UNet added to its time embedding; during training it was dropped 10% of the time, so the same network is also an
# *unconditional* model, which is what classifier-free guidance needs (section 5). This notebook compares the zoo's
# distilled digits students with the teacher from the same noise and labels, looks at what each model *predicts*
# along the way, scores samples with a local FID-like distance, and exports a student as a plain diffusers pipeline.
#
# **Learning goals.** After this notebook you can:
# 1. load an image teacher and its distilled students from the zoo and compare them from the same noise and labels
#    at few steps;
# 2. read the x̂0 (diffusion-target) view and tell when a model commits to its digit;
# 3. score samples with FD-digits, KID, classifier accuracy and diversity, against the noise floor of real data;
# 4. export a lab student as a diffusers pipeline and check that it reproduces the lab's samples.
#
# **In the app:** the digits students from the same noise, with the x̂0 view of the consistency student:
# [Digits](http://localhost:8501/Digits?students=consistency&students=dmd&students=progressive&students=guidance&tnfe=50&view=consistency&view_nfe=4);
# the same page with one digit repeated, to see the variety within a class:
# [Digits, eights](http://localhost:8501/Digits?students=consistency&students=dmd&labels=8%208%208%208%208%208%208%208).

# %% tags=["parameters"]
FAST = False  # the test suite sets FAST = True: fewer images, teacher steps and live steps, same lessons

# %%
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import lab
import lab.interop
import lab.viz
import lab.viz.inside
from lab.metrics import images as im
from lab.probes import images as probes
from lab.probes.inside import inside_views
from lab.runs import Recorder
from lab.viz import images as viz

torch.set_num_threads(1)  # small networks: one thread is about as fast, and kind to a shared laptop
SEED = 0
TEACHER_NFE = 20 if FAST else 50   # the teacher's reference step count in the grids
N_IMG = 100 if FAST else 500       # images per measured metric
LIVE_STEPS = 4 if FAST else 30     # steps of the live distillation in section 7
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
for method, g in students.items():
    print(f"{method:12s} kind {g.kind!r:14s} native NFE {tuple(g.native_nfe)} | {lab.get_method(method).mechanism}")
if missing:
    print("not built yet:", ", ".join(missing), "-> python bench/digits.py --zoo   (or: lab zoo build)")

# %% [markdown]
# ## 2. Few steps, same noise, same labels
#
# `sample_grid` feeds the same noise and the same labels (0 to 9) to every row: the teacher at many Euler steps, the
# *same teacher* at 1, 2 and 4 steps (what a few steps give without distillation), then each student at the step
# counts it was trained for. With one step the teacher jumps straight to its x0 prediction at pure noise: the
# *average* of all digits with that label, a blur. The students have to put a sharp, legible digit there instead.

# %%
grid = probes.sample_grid(teacher, students, teacher_nfe=TEACHER_NFE, n=10, seed=SEED)
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
# prediction to the next time and predicts again. (Fidelity note: 8x8 digits have no "composition" beyond the
# digit's identity and stroke layout; that is what to look for here.)

# %%
pair = {"consistency": students["consistency"]} if "consistency" in students else {}
if not pair:
    print("no consistency student in the zoo: showing the teacher only")
views = probes.x0_views(teacher, pair, nfe_teacher=8, nfe_student=4, labels=[0, 3, 5, 8], n=4, seed=SEED)
viz.x0_view_figure(views).show()

# %% [markdown]
# Read the teacher's $\hat x_0$ row from left to right: at $t = 1$ it is the blurry class average (the posterior
# mean given only the label), and the identity and stroke layout of the digit settle within the first few steps, well
# before $x_t$ looks like anything. Exercise 09.2 measures how far each of the teacher's predictions is from its
# final sample. The consistency student's first prediction is a finished digit, but its sampler re-noises it and
# predicts again, so its later steps can still change the digit's details.
#
# ## 4. Inside the digits students
#
# `inside_views` works on image students too. It fits nothing here (an update of a UNet's auxiliary network costs
# about half a second on one core); the views are the x̂0 view at the student's own step count, the method's own view
# where it is cheap (the consistency student's errors along its training grid, the guidance student's weight sweep,
# the progressive student's halving schedule) and the teacher-student CKA of their UNet layers.

# %%
for method in [m for m in (("consistency",) if FAST else ("consistency", "guidance")) if m in students]:
    print(f"=== {method}")
    for v in inside_views(students[method], seed=SEED):
        print(f"— {v.title}: {v.caption}")
        lab.viz.inside.view_figure(v).show()

# %% [markdown]
# ## 5. Guidance weight
#
# Classifier-free guidance extrapolates from the unconditional velocity towards the conditional one,
# $v = v_u + w\,(v_c - v_u)$: $w = 0$ ignores the label, $w = 1$ is the plain conditional model, and $w > 1$ exaggerates
# what makes a digit *this* digit, trading variety for legibility. The teacher pays two network passes per step for it;
# the guidance-distilled student of section 4 takes $w$ as an input and pays one (notebook 08 measures this on 2D
# points).

# %%
viz.guidance_grid_figure(probes.guidance_grid(teacher, ws=(0.0, 1.0, 2.0, 4.0), nfe=8, n=10, seed=SEED)).show()

# %% [markdown]
# ## 6. Metrics
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
# **noise floor** scores real training digits as if they were samples: that is what perfect samples get at this size
# (measured here with 1000 digits, like the cards).

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
# ## 7. Export to a diffusers pipeline
#
# `lab.interop.export_pipeline` writes a lab image generator as a plain diffusers `DDPMPipeline` folder (a
# `UNet2DModel` and a `FlowMatchEulerDiscreteScheduler`): anyone with diffusers can load it without the lab. The label
# (default: none, unconditional) is folded into the UNet's time-embedding bias, and the scheduler's grid is stretched
# onto ours, so the pipeline is **exact** at the step count it was exported for. diffusers draws its starting noise with
# `torch.randn` from the generator it is given, as the lab does, so the same seed gives the same images.

# %%
from diffusers import DiffusionPipeline  # noqa: E402  (diffusers is a dependency of the lab)

export_dir = Path(tempfile.mkdtemp(prefix="lab-export-"))
folder = lab.interop.export_pipeline("digits/consistency", export_dir / "consistency")
print("exported:", sorted(p.name for p in folder.iterdir()))
pipe = DiffusionPipeline.from_pretrained(folder, low_cpu_mem_usage=False)  # no `accelerate` needed
pipe.set_progress_bar_config(disable=True)
images = pipe(batch_size=16, num_inference_steps=1, generator=torch.Generator().manual_seed(SEED), output_type="np").images
from_pipe = torch.tensor(images).permute(0, 3, 1, 2) * 2 - 1  # [0, 1] HWC -> [-1, 1] CHW, the lab's layout
from_lab = students["consistency"].sample(16, nfe=1, seed=SEED).x.clamp(-1, 1)
other_seed = students["consistency"].sample(16, nfe=1, seed=SEED + 1).x.clamp(-1, 1)
viz.image_grid_figure(np.stack([from_lab.numpy(), from_pipe.numpy()]), ["lab", "diffusers"],
                      title="The consistency student, 1 step, unconditional: the lab and the exported pipeline").show()
gap, scale = float((from_pipe - from_lab).abs().max()), float((other_seed - from_lab).abs().mean())
assert gap < 1e-3 * scale, f"the pipeline should reproduce the lab's images: max gap {gap:.2e} vs seed-to-seed {scale:.3f}"
print(f"largest pixel gap, pipeline vs lab from the same seed: {gap:.1e}; mean gap between two seeds: {scale:.3f}")

# %% [markdown]
# ## 8. A short live distillation
#
# Consistency distillation (Song et al. 2023), a few steps from the teacher, here and now: draw a digit, noise it to
# $x_{t_{n+1}}$, take one teacher ODE step to $t_n$, and train the student so that its prediction at $x_{t_{n+1}}$ matches
# a slowly moving (EMA) copy of itself at the teacher's next point. The student starts as a copy of the teacher, so its
# first predictions along one trajectory disagree exactly as much as the teacher's $\hat x_0$ do between adjacent steps;
# training makes them agree.

# %%
m = lab.get_method("consistency")(teacher, "digits", {"steps": LIVE_STEPS, "batch": 32, "lr": 1e-4,
                                                       "n_intervals": 18, "target_ema": 0.95}, seed=SEED)
rec = Recorder(every=1)
t0 = time.perf_counter()
for state in lab.distill(m, callbacks=[rec]):
    pass
print(f"{m.it} steps in {time.perf_counter() - t0:.1f} s; the zoo student's recipe:",
      lab.zoo.image_student_recipes()["consistency"])
log = rec.frame()
loss = log["loss/consistency"]
print(f"mean loss, first steps {loss.iloc[:len(loss) // 3].mean():.4g} -> last steps {loss.iloc[-(len(loss) // 3):].mean():.4g}")
lab.viz.metrics_figure(log.assign(**{"loss/consistency (rolling mean of 5)": loss.rolling(5, min_periods=1).mean()})).show()
live = probes.sample_grid(teacher, {f"live ({m.it} steps)": m.generator(), **pair}, teacher_nfe=TEACHER_NFE,
                          student_nfe=(1, 2), n=10, seed=SEED)
viz.sample_grid_figure(live).show()

# %% [markdown]
# A few dozen steps move the student only a little away from the teacher's one-step blur; compare with the zoo's
# consistency student's rows, distilled with the full recipe printed above.

# %% [markdown]
# ### Exercise 09.1: One step, with and without distillation
#
# **Find:** what distillation buys at one step. Sample `N_IMG` digits with labels `y = torch.arange(N_IMG) % 10` from
# the teacher at `nfe=1` and from the consistency student at `nfe=1`, and score both with
# `im.image_metrics(x, y)["fd"]`.
#
# **Check:** the consistency student's one-step FD-digits is below half the teacher's one-step FD-digits

# %%
import workshop

fd_student_1 = ...  # your code: FD-digits of the consistency student at one step
fd_teacher_1 = ...  # your code: FD-digits of the teacher at one step
workshop.check("09.1", fd_student_1=fd_student_1, fd_teacher_1=fd_teacher_1)

# %% [markdown]
# ### Exercise 09.2: When does the teacher commit?
#
# **Find:** how early in its 8 steps the teacher settles its digit. In `views["teacher"]` (section 3), `"times"` are
# the step times, `"x0"` the predictions (step first) and `"final"` the final samples; measure the mean absolute pixel
# difference between the prediction and the final sample at the first step (t = 1) and halfway (t = 0.5).
#
# **Check:** halfway, the teacher's prediction is closer to its final sample than half the distance of its first prediction

# %%
gap_first = ...  # your code: mean |x̂0 at t = 1 - final| for the teacher
gap_half = ...   # your code: mean |x̂0 at t = 0.5 - final| for the teacher
workshop.check("09.2", gap_first=gap_first, gap_half=gap_half)

# %% [markdown]
# ### Exercise 09.3: Export one class
#
# **Find:** how to export a pipeline that draws only threes. Export the consistency student again with `label=3` to a
# new folder under `export_dir`, sample 100 images from it and from the unconditional pipeline `pipe` above (one step,
# same seed), and measure the share that the lab's separate digits classifier reads as a 3
# (`im.predict(x)`, with `x` in the lab's layout as in section 7).
#
# **Check:** the classifier reads more than 80% of the label-3 pipeline's images as a 3 and fewer than 50% of the unconditional pipeline's

# %%
share_three_label = ...          # your code: share of 3s from the label-3 export
share_three_unconditional = ...  # your code: share of 3s from the unconditional export
workshop.check("09.3", share_three_label=share_three_label, share_three_unconditional=share_three_unconditional)

# %% [markdown]
# ## Recap
#
# - The digits teacher is a class-conditional UNet on the same flow-matching process as the 2D teachers; the same
#   methods distil it, and the same probes compare teacher and students from the same noise and labels.
# - At one step the teacher can only draw the class average; a distilled student draws a legible digit, and
#   FD-digits (against the noise floor of real digits) measures the gap.
# - The x̂0 view shows each step's prediction of the finished image: the teacher's first one is the class average,
#   and the digit is mostly settled halfway through its steps, long before x_t looks like one.
# - `lab.interop.export_pipeline` turns a lab student into a plain diffusers pipeline that reproduces the lab's
#   samples exactly at its step count, for one class or unconditionally.
