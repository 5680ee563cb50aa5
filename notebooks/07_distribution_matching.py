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
# # Distribution matching: DMD, VSD and SiD
#
# The trajectory methods (consistency, progressive, reflow) teach a student to *follow* the teacher's ODE. The
# **distribution-matching** family never looks at trajectories. A one-step generator $G(z)$ is trained so that the
# *distribution* of its samples matches the teacher's, by following the gradient of a divergence between the two
# noised distributions:
#
# $$\nabla_\theta D = \mathbb{E}_{t, z, \epsilon}\Big[w(t)\,\big(s_\text{fake}(x_t, t) - s_\text{real}(x_t, t)\big)\,\frac{\partial x_t}{\partial \theta}\Big],
# \qquad x_t = \alpha_t G_\theta(z) + \sigma_t \epsilon .$$
#
# * $s_\text{real}$ is the frozen teacher: the score of the data distribution, noised.
# * $s_\text{fake}$ is a second network trained **online**, with the ordinary denoising loss, on the generator's own
#   samples: it tracks the score of the generator's current distribution.
# * Where the two disagree, the generator's samples move from where the fake score points (where it *is*) to where
#   the real score points (where the data is).
#
# Three methods, one idea, different details (each module's docstring lists them, with fidelity notes):
#
# | method | gradient | fake score starts as | extra |
# |---|---|---|---|
# | `dmd` (Yin et al. 2024) | difference of the two x̂0 predictions, normalised by mean abs(x − x̂0_real), stop-gradient | a copy of the teacher | regression loss on (noise, teacher ODE sample) pairs |
# | `vsd` (ProlificDreamer, SwiftBrush) | $w(t)(\hat\epsilon_\text{teacher} - \hat\epsilon_\text{fake})$, stop-gradient | the teacher plus a LoRA adapter | none |
# | `sid` (Zhou et al. 2024) | Fisher divergence via score identities, weight α = 1.2 | a copy of the teacher | gradient flows through **both networks' inputs** |

# %%
import time

import pandas as pd
import torch

import lab
import lab.probes
import lab.probes.dm as dm
import lab.viz
import lab.viz.dm
from lab.metrics import mode_stats, low_density_share, sliced_wasserstein

torch.set_num_threads(1)  # toy networks: one thread is as fast, and kind to a shared laptop
SEED = 0
DATA = "toy2d:8gaussians"
source = lab.data.toy2d.get("8gaussians")
teacher = lab.zoo.load("toy2d/8gaussians/teacher")
ref = source.sample(4000, 1234)              # fresh data for every distance below
z = lab.diffusion.make_noise(4000, 2, seed=99)  # the same noise for every generator
for name in ("dmd", "vsd", "sid"):
    M = lab.get_method(name)
    print(f"{name:4s} {M.paper}\n     {M.mechanism}")

# %% [markdown]
# ## 1. Before training: the two scores agree
#
# Every generator starts as a copy of the teacher evaluated once at t = 1, so its one-step samples are the teacher's
# one-step samples: the blurry posterior mean near the centre. The fake score also starts as (a copy of) the teacher, so
# **real minus fake is zero everywhere**: there is nothing to follow yet. The first fake-score updates, fitted to the
# generator's collapsed samples, are what create the field.

# %%
fresh = lab.get_method("dmd")(teacher, DATA, {"steps": 300}, seed=SEED)
f0 = dm.score_field(fresh, t=0.5, n=15)
print("max |real - fake| before training:", float((f0.diff_dx**2 + f0.diff_dy**2).pow(0.5).max()))
lab.viz.dm.score_field_figure(f0, fields=("real", "fake", "diff")).show()

# %% [markdown]
# ## 2. Distil with all three
#
# 300 generator steps for DMD and SiD, 600 for VSD (its default is 900: with the fake score only a low-rank
# adapter of the teacher, it needs more steps to follow the generator), with a `FakeScoreTracker` on DMD: every 50 steps it measures how far
# the fake score is from the **true** score of the generator's current distribution. That true score is known exactly
# here: noising a finite set of samples gives a mixture of Gaussians, whose score is cheap to evaluate
# (`dm.empirical_score`).

# %%
methods, seconds = {}, {}
tracker = dm.FakeScoreTracker(every=50, t_values=(0.2, 0.5, 0.8))
for name, cfg in {"dmd": {"steps": 300}, "dmd (no regression)": {"steps": 300, "reg_weight": 0.0},
                  "vsd": {"steps": 600}, "sid": {"steps": 300}}.items():
    m = lab.get_method(name.split()[0])(teacher, DATA, cfg, seed=SEED)
    t0 = time.perf_counter()
    for _ in lab.distill(m, callbacks=[tracker] if name == "dmd" else []):
        pass
    methods[name], seconds[name] = m, time.perf_counter() - t0
    print(f"{name:20s} {m.it} steps in {seconds[name]:.1f} s")

# %% [markdown]
# ## 3. The field the generator follows
#
# `score_arrows` evaluates both scores where the generator's gradient is actually taken: at noised generator samples.
# Grey dots are the clean samples G(z); arrows show real − fake (switch on "real" and "fake" in the legend). Where the
# generator already covers a mode the two scores agree and the arrows vanish; samples between modes are pushed out.

# %%
arrows = dm.score_arrows(methods["dmd"], t=0.3, n=400)
lab.viz.dm.score_field_figure(arrows, title="DMD after training: real − fake score at noised generator samples (t = 0.3)").show()

# %%
lab.viz.dm.score_field_figure(dm.score_field(methods["sid"], t=0.3, n=21), title="SiD: real − fake score on a grid (t = 0.3)").show()

# %% [markdown]
# ## 4. Does the fake score keep up?
#
# The generator is only as good as its fake score: a stale fake score pushes samples the wrong way. The tracker's curves
# show the fake score's error against the generator's true (noised) score over training, at three noise levels. It is
# smallest at large t, where every distribution looks alike; DMD2's answer to a lagging fake score is the two-time-scale
# update (several fake steps per generator step).

# %%
track = tracker.frame()
lab.viz.dm.fake_score_error_figure(track).show()
track.tail(6)

# %% [markdown]
# ## 5. Mode coverage
#
# Reverse-KL objectives are *mode-seeking*: a generator can lower them by dropping modes, which is why DMD adds its
# regression loss. For the 8-Gaussians mixture we can count: `high_quality` is the share of samples within 3 standard
# deviations of a mode, `modes_covered` how many of the 8 modes get at least a quarter of their expected samples, and
# `between modes` the share of samples far from every mode.

# %%
rows = []
gens = {"teacher @1": (teacher, 1), "teacher @50": (teacher, 50), **{k: (m.generator(), 1) for k, m in methods.items()}}
for name, (g, nfe) in gens.items():
    x = g.sample(z=z, nfe=nfe, seed=SEED).x
    st = mode_stats(x, source.gmm)
    rows.append({"model": name, "nfe": nfe, "swd": sliced_wasserstein(x, ref), "high_quality": st["high_quality"],
                 "modes_covered": st["modes_covered"], "between modes": low_density_share(x, source.gmm),
                 "distill s": seconds.get(name)})
coverage = pd.DataFrame(rows).set_index("model")
coverage.round(3)

# %%
panels = lab.probes.sample_panels(teacher, {k: m.generator() for k, m in methods.items()}, source, n=1000,
                                  student_nfe=(1,), seed=SEED)
lab.viz.sample_panels_figure(panels).show()

# %% [markdown]
# Read the table against the teacher at 1 step (what the same network gives without distillation) and at 50 steps
# (the target). These are shortened schedules; `bench/RESULTS.md` has every method at its default on four
# datasets, with the time each took to come within 1.5x and 1.25x of the teacher.
#
# ## Exercises
#
# 1. **Two time scales.** Give DMD `fake_updates=5` (five fake-score steps per generator step, as DMD2 does) and watch
#    the tracker's error and the mode table. Then try `lab.get_method("dmd2")`, which also drops the regression loss.
# 2. **SiD's α.** SiD's loss mixes two terms with weight α (`alpha`, default 1.2). Try 0.5 and 1.0: α = 1 drops the
#    |x̂0_real − x̂0_fake|² term and keeps only the cross term.
# 3. **LoRA or copy.** VSD's fake score starts from the teacher. Compare `{"fake_init": "lora"}` with `{"fake_init": "copy"}`
#    in the fake-score error at step 50.
# 4. **Where does the field point?** Plot `dm.score_field` at t = 0.1 and t = 0.9 for the trained DMD. Why is the field
#    so much smoother at large t?
