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
# # 07 · Distribution matching: DMD, DMD2, VSD, SiD, and adversarial distillation
#
# The trajectory methods of notebook 06 teach a student to *follow* the teacher's ODE. The **distribution-matching**
# family never looks at trajectories: a one-step generator G(z) is trained so that the *distribution* of its samples
# matches the teacher's, by following the gradient of a divergence between the two noised distributions,
#
# $$\nabla_\theta D = \mathbb{E}_{t, z, \epsilon}\Big[w(t)\,\big(s_\text{fake}(x_t, t) - s_\text{real}(x_t, t)\big)\,\frac{\partial x_t}{\partial \theta}\Big],
# \qquad x_t = \alpha_t G_\theta(z) + \sigma_t \epsilon ,$$
#
# where s_real is the frozen teacher (the score of the noised data) and s_fake a second network trained **online**,
# with the ordinary denoising loss, on the generator's own samples. **Adversarial** distillation (ADD) replaces the
# fake score by a discriminator that tells real data from the student's samples, and keeps a regression onto the
# teacher's x̂0. This notebook opens both kinds up on the shipped students and counts the modes they cover.
#
# **Learning goals.** After this notebook you can:
# 1. write the distribution-matching gradient (real minus fake score at noised generator samples) and say what the
#    fake score tracks and why it must keep up;
# 2. draw a method's score fields (real, fake, their difference) and its fake-score error while it is fitted;
# 3. read ADD's discriminator decision field and say where it pushes the student;
# 4. measure mode coverage of one-step students against the teacher at 1 and 50 steps.
#
# **In the app:** the five one-step students side by side, inside DMD
# ([Generators](http://localhost:8501/Generators?dist=8gaussians&students=dmd&students=dmd2&students=vsd&students=sid&students=add&inside=dmd)),
# ADD's decision field ([Generators, add](http://localhost:8501/Generators?dist=8gaussians&students=add&inside=add)),
# and DMD distilled live with its score field under the samples
# ([Distill live, dmd](http://localhost:8501/Distill_live?dist=8gaussians&method=dmd)).

# %% tags=["parameters"]
FAST = False  # the test suite sets FAST = True: fewer training and fitting steps, same lessons

# %%
import pandas as pd
import torch

import lab
import lab.probes
import lab.probes.dm as dm
import lab.viz
import lab.viz.dm
from lab.metrics import low_density_share, mode_stats, sliced_wasserstein
from lab.probes.inside import inside_views, rebuild_method
from lab.viz.inside import view_figure

torch.set_num_threads(1)  # toy networks: one thread is as fast, and kind to a shared laptop
SEED = 0
DATA = "toy2d:8gaussians"
N = 500 if FAST else 4000           # points per distance and mode count
DEMO_STEPS = 40 if FAST else 300    # steps of the short DMD demonstration
FIT = 20 if FAST else 200           # steps fitting a saved student's fake score / discriminator against it
source = lab.data.toy2d.get("8gaussians")
teacher = lab.zoo.load("toy2d/8gaussians/teacher")
ref = source.sample(N, torch.Generator().manual_seed(1234))  # fresh data for every distance below
z = lab.diffusion.make_noise(N, 2, seed=99)                   # the same noise for every generator
NAMES = ["dmd", "dmd2", "vsd", "sid", "add"]
students = {name: lab.zoo.load(f"toy2d/8gaussians/{name}") for name in NAMES}
pd.DataFrame([{"method": name, "paper": lab.get_method(name).paper, "mechanism": lab.get_method(name).mechanism}
              for name in NAMES]).set_index("method")

# %% [markdown]
# | method | generator gradient | its second network | extra |
# |---|---|---|---|
# | `dmd` (Yin et al. 2024) | difference of the two x̂0 predictions, normalised, stop-gradient | fake score, a copy of the teacher | regression onto (noise, teacher ODE sample) pairs |
# | `dmd2` (Yin et al. 2024b) | the same, no regression | fake score, **several updates per generator step** (two time scales) | optional GAN head on the fake score |
# | `vsd` (ProlificDreamer, SwiftBrush) | w(t)(ε̂_teacher − ε̂_fake), stop-gradient | the teacher plus a LoRA adapter | none |
# | `sid` (Zhou et al. 2024) | Fisher divergence via score identities, weight α = 1.2 | fake score, a copy of the teacher | gradient through both networks' inputs |
# | `add` (Sauer et al. 2023) | hinge GAN loss on re-noised samples + c(t)-weighted x̂0 regression | a discriminator | few steps (1, 2, 4) |
#
# ## 1. Before training: the two scores agree
#
# A fresh DMD generator is a copy of the teacher evaluated once at t = 1, and its fake score is a copy of the teacher
# too, so **real minus fake is zero everywhere**: there is nothing to follow yet. The first fake-score updates,
# fitted to the generator's collapsed one-step samples, are what create the field.

# %%
fresh = lab.get_method("dmd")(teacher, DATA, {"steps": DEMO_STEPS, "reg_weight": 0.0}, seed=SEED)
f0 = dm.score_field(fresh, t=0.5, n=15)
fresh_max_diff = float((f0.diff_dx ** 2 + f0.diff_dy ** 2).pow(0.5).max())
print("max |real - fake| before training:", fresh_max_diff)
lab.viz.dm.score_field_figure(f0, fields=("real", "fake", "diff"), title="Fresh DMD: real and fake scores (t = 0.5)").show()

# %% [markdown]
# ## 2. A short demonstration: does the fake score keep up?
#
# We distil this fresh DMD for `DEMO_STEPS` steps (no regression loss, so no teacher pairs to make) with a
# `FakeScoreTracker`: every few steps it measures how far the fake score is from the **true** score of the
# generator's current distribution. That true score is known exactly here: noising a finite set of samples gives a
# mixture of Gaussians, whose score is cheap (`dm.empirical_score`). A stale fake score pushes samples the wrong way.

# %%
tracker = dm.FakeScoreTracker(every=10 if FAST else 50, t_values=(0.2, 0.5, 0.8))
for _ in lab.distill(fresh, callbacks=[tracker]):
    pass
track = tracker.frame()
lab.viz.dm.fake_score_error_figure(track).show()
arrows = dm.score_arrows(fresh, t=0.3, n=300)
lab.viz.dm.score_field_figure(arrows, title=f"DMD after {fresh.it} steps: real − fake at noised generator samples").show()

# %% [markdown]
# The error is largest at small t, where the generator's distribution has the most detail, and falls as the fake
# score catches up. DMD2's answer to a lagging fake score is the two-time-scale update (`fake_updates`, five fake steps
# per generator step in its default config).
#
# ## 3. Inside the shipped students
#
# `inside_views` rebuilds each zoo student's method from its recipe, refits the networks the method trains besides
# the student (the fake score, ADD's discriminator) against the frozen student for `FIT` steps, starting from their
# initialisation, and returns the method's own views. For the four distribution-matching methods the own view is the
# fake-score error **while it is fitted**; for ADD it is the discriminator's decision field.

# %%
views = {name: {v.kind: v for v in inside_views(students[name], fit_steps=FIT, n=256 if FAST else 512, seed=SEED)}
         for name in NAMES}
pd.DataFrame([{"method": name, "views": ", ".join(views[name])} for name in NAMES]).set_index("method")

# %%
for name in ("dmd", "dmd2", "vsd", "sid"):
    view_figure(views[name]["fake_score_error"]).update_layout(title=f"{name}: fake-score error while it is fitted").show()

# %% [markdown]
# The field each generator follows: the same saved students, with their fake scores refitted, show real − fake on a
# grid. Where the generator already covers a mode the two scores agree and the arrows vanish; samples between modes
# are pushed out. (`rebuild_method` gives the method itself, so the `lab.probes.dm` probes can be run on it.)

# %%
methods = {name: rebuild_method(students[name], fit_steps=FIT, seed=SEED) for name in ("dmd", "dmd2", "vsd", "sid")}
for name, m in methods.items():
    lab.viz.dm.score_field_figure(dm.score_field(m, t=0.3, n=15), title=f"{name}: real − fake score on a grid (t = 0.3)").show()

# %% [markdown]
# **ADD**: shading is the discriminator's logit on points noised to t = 0.1 (blue: looks like real data, red: like
# the student); dots are real data and the student's samples noised the same way. A good student leaves the
# discriminator little to tell apart: the logits on real and student points are close.

# %%
v = views["add"]["decision"]
print(v.caption)
view_figure(v).show()
v.data["field"].logit.describe()[["min", "mean", "max"]]

# %% [markdown]
# ## 4. Mode coverage
#
# Reverse-KL objectives are *mode seeking*: a generator can lower them by dropping modes, which is why DMD keeps a
# regression loss and ADD a distillation term. For the 8-Gaussians mixture we can count: `high_quality` is the share of
# samples within 3 standard deviations of a mode, `modes_covered` how many of the 8 modes get at least a quarter of
# their expected samples, `between modes` the share far from every mode.

# %%
rows = []
gens = {"teacher @1": (teacher, 1), "teacher @50": (teacher, 50), **{k: (g, 1) for k, g in students.items()}}
for name, (g, nfe) in gens.items():
    x = g.sample(z=z, nfe=nfe, seed=SEED).x
    st = mode_stats(x, source.gmm)
    rows.append({"model": name, "nfe": nfe, "swd": sliced_wasserstein(x, ref), "high_quality": st["high_quality"],
                 "modes_covered": st["modes_covered"], "between modes": low_density_share(x, source.gmm)})
coverage = pd.DataFrame(rows).set_index("model")
coverage.round(3)

# %%
worst = coverage.loc[NAMES, "high_quality"].min()
assert worst > coverage.loc["teacher @1", "high_quality"], \
    f"a one-step student ({worst:.3f}) is no better than the teacher at one step ({coverage.loc['teacher @1', 'high_quality']:.3f})"

panels = lab.probes.sample_panels(teacher, students, source, n=300 if FAST else 1000, student_nfe=(1,), seed=SEED)
lab.viz.sample_panels_figure(panels).show()

# %% [markdown]
# *Fidelity notes.* The papers work on images with U-Nets; here every network is a small MLP on 2D points, which is
# what makes the true score of the generator's distribution computable (`dm.empirical_score`), so the fake score's
# error can be measured at all. ADD's discriminator is an MLP on noised points, not a frozen DINOv2 feature network
# with trained heads. The fake scores and the discriminator shown in section 3 are refitted against the saved student
# (they are not saved with it), starting from their initialisation.

# %% [markdown]
# ### Exercise 07.1: Nothing to follow yet
#
# **Find:** how different the real and fake scores are before training, and after the fake score has been fitted to
# a trained generator. `fresh_max_diff` (section 1) is the first; measure the second with
# `dm.score_field(methods["dmd"], t=0.5, n=15)` the same way.
#
# **Check:** the largest |real − fake| of the fresh method is below a hundredth of the fitted DMD method's

# %%
import workshop

fitted_max_diff = ...  # your code
workshop.check("07.1", fresh_max_diff=fresh_max_diff, fitted_max_diff=fitted_max_diff)

# %% [markdown]
# ### Exercise 07.2: The fake score catches up
#
# **Find:** whether the fake score of the demonstration in section 2 kept up with its generator. `track` has one row
# per (step `it`, time `t`) with the error `error_eps`; compare the first and the last step at t = 0.2.
#
# **Check:** the fake score's error at t = 0.2 at the last tracked step is below its error at the first

# %%
error_first = ...  # your code
error_last = ...   # your code
workshop.check("07.2", error_first=error_first, error_last=error_last)

# %% [markdown]
# ### Exercise 07.3: Mode coverage in one step
#
# **Find:** which one-step students land their samples on the modes. Take the `high_quality` column of `coverage`
# for the five students and for `teacher @1`.
#
# **Check:** every student's high-quality share at 1 step is above the teacher's at 1 step, and each covers at least 7 of the 8 modes

# %%
student_high_quality = ...  # your code: {method: high_quality}
student_modes = ...         # your code: {method: modes_covered}
teacher_high_quality = ...  # your code
workshop.check("07.3", student_high_quality=student_high_quality, student_modes=student_modes,
               teacher_high_quality=teacher_high_quality)

# %% [markdown]
# ## Recap
#
# - Distribution matching pushes a one-step generator's samples along real − fake score at noised samples; the fake
#   score is trained online on the generator's own samples and starts as the teacher, so the field starts at zero.
# - The generator is only as good as its fake score: DMD2 updates it several times per generator step, VSD keeps it a
#   LoRA of the teacher, SiD sends gradients through both networks.
# - ADD swaps the fake score for a discriminator (plus a regression onto the teacher): its decision field shows where
#   the student still looks fake.
# - One-step students of this family cover the modes where the teacher at one step gives the blurry mean.
