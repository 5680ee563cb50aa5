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
# # 11 · Dataset distillation: a few synthetic digits per class
#
# Every other notebook distils a *model*. Dataset distillation distils the *data*: it learns a tiny synthetic
# training set S, here 1 or 10 images per class of the 8x8 digits, such that a fresh network trained only on S does
# well on the real test set. The pixels of S are the parameters. Four ways to score them: **DC** (Zhao et al. 2021)
# matches the gradients real and synthetic batches give a random network; **DM** (Zhao & Bilen 2023) matches their
# mean embeddings under random networks; **MTT** (Cazenavette et al. 2022) trains on S for a few steps from a point
# of an expert's training run on real data and asks to land where the expert did a few epochs later; **FTD** (Du et
# al. 2023) does the same against experts trained with sharpness-aware minimisation, and averages the images over
# the iterations, to shrink the error that accumulates when a net trains on S alone for the whole run.
#
# **Learning goals.** After this notebook you can:
# 1. evaluate a synthetic set with the standard protocol, against random real images and the full data;
# 2. run a distillation and watch the images change, class by class;
# 3. read an expert trajectory and a student's path in parameter space (PCA) and say what MTT's loss measures;
# 4. measure the accumulated trajectory error FTD is built to reduce.
#
# **In the app:** the shipped sets, their accuracy against images per class, and MTT's trajectories:
# [Dataset distillation: mtt at ipc 10](http://localhost:8501/Dataset_distillation?method=mtt&ipc=10);
# DM at one image per class:
# [Dataset distillation: dm at ipc 1](http://localhost:8501/Dataset_distillation?method=dm&ipc=1).

# %% tags=["parameters"]
FAST = False  # the test suite sets FAST = True: fewer iterations, same lessons

# %%
import numpy as np
import pandas as pd
import torch

import lab
import lab.dd
from lab.dd.base import EvalProtocol, evaluate_set, full_data, random_real
from lab.dd.experts import load_experts
from lab.dd.trajectory import accumulated_error, trajectory_error
from lab.probes import dd as probes
from lab.viz import dd as viz

torch.set_num_threads(1)  # toy networks: one thread is as fast, and kind to a shared laptop
SEED = 0
DM_STEPS = 60 if FAST else 200      # DM iterations of the live run
MTT_STEPS = 25 if FAST else 100     # MTT iterations of the live run
for name in ("dc", "dm", "mtt", "ftd"):
    M = lab.dd.get(name)
    print(f"{name:4s} {M.mechanism}\n     {M.paper}")

# %% [markdown]
# ## 1. The evaluation protocol and its baselines
#
# A synthetic set is judged by what it trains: a fresh ConvNet (two blocks of conv, instance norm, ReLU, average
# pooling, then a linear layer) trained on S only, with SGD (momentum 0.9) for 300 steps and the learning rate cut
# by ten halfway, then tested on the 360 test digits. The baselines every paper reports: the same number of *random
# real* images per class, and the whole training split.

# %%
base = {}
for ipc in (1, 10):
    x, y = random_real(ipc, SEED)
    base[ipc] = evaluate_set(x, y, [SEED], EvalProtocol())["acc"]
    print(f"random real, {ipc:2d} per class ({len(x):3d} images): test accuracy {base[ipc]:.3f}")
print(f"full data (1,437 images, the same 300 steps): {full_data([SEED])['acc']:.3f}")

# %% [markdown]
# ## 2. Distribution matching, live
#
# DM starts from random real images (the very baseline above, same seed) and, at every iteration, draws a fresh
# random network, embeds the real images of each class and the synthetic ones (under the same random augmentation)
# and moves the synthetic pixels so that their mean embedding matches the real one. No network is ever trained.

# %%
dm = lab.dd.get("dm")({"ipc": 1, "steps": DM_STEPS, "eval_steps": 300}, seed=SEED)
for state in lab.distill(dm):
    pass
acc_dm1 = dm.history[-1]["acc"]
print(f"DM at 1 image per class after {DM_STEPS} iterations: {acc_dm1:.3f} (random real: {base[1]:.3f})")
viz.evolution_figure(probes.image_frames(dm), title="DM: the class images over the iterations").show()
assert acc_dm1 > base[1], f"DM's set ({acc_dm1:.3f}) should beat the random real images it started from ({base[1]:.3f})"

# %% [markdown]
# The digits lose their individual strokes and become smoother, more "average" shapes: one image has to stand for
# 140 real ones. The shipped sets (written by `bench/dd.py`, three seeds per method) show the same at 10 per class.

# %%
sc = probes.showcase()
acc_table = probes.accuracy_table(sc["card"])
viz.accuracy_vs_ipc_figure(acc_table).show()
acc_table.pivot(index="method", columns="ipc", values="acc").round(3)

# %% [markdown]
# ## 3. Matching training trajectories
#
# MTT needs *experts*: ConvNets trained on the real digits, their parameters recorded after every epoch. The lab
# ships six of six epochs (`assets/zoo/dd`). Each MTT iteration takes an expert's parameters at a random epoch t,
# trains on S for N steps with a learnable step size, and scores the end point by its squared distance to the
# expert's parameters at epoch t + M, divided by how far the expert itself moved. Below, the experts and the path of
# a net trained on the distilled set from expert 0's initialisation, in the plane of the first two principal
# components of all those parameter vectors.

# %%
experts_sgd, card_sgd = load_experts("sgd")
print("expert test accuracy per epoch:", [round(m["acc"], 3) for m in card_sgd["test"][0]])
mtt = lab.dd.get("mtt")({"ipc": 1, "steps": MTT_STEPS, "syn_steps": 10, "eval_steps": 300}, seed=SEED)
for state in lab.distill(mtt):
    pass
print(f"MTT at 1 image per class: {mtt.history[-1]['acc']:.3f}; learned step size {mtt.eval_lr():.4f}")
path = probes.student_path(mtt.images(), mtt.labels(), mtt.eval_lr(), experts_sgd, expert=0, syn_steps=10)
viz.parameter_paths_figure(probes.parameter_paths(experts_sgd, {"mtt student": path})).show()

# %% [markdown]
# ## 4. The accumulated trajectory error
#
# During distillation the student is put back on the expert's trajectory at every iteration. At evaluation it trains
# on S alone, and its small per-segment errors add up. FTD measures that by training on S from an expert's
# initialisation and comparing, epoch by epoch, the test loss with the expert's at the same epoch. FTD's experts are
# trained with sharpness-aware minimisation (flatter), and its images are a moving average over the iterations.

# %%
ftd = lab.dd.get("ftd")({"ipc": 1, "steps": MTT_STEPS, "syn_steps": 10, "ema_decay": 0.9, "eval_steps": 300},
                        seed=SEED)
for state in lab.distill(ftd):
    pass
tables = [probes.trajectory_error_table(m.images(), m.labels(), m.eval_lr(), kind, method=name, syn_steps=10)
          for name, m, kind in (("mtt", mtt, "sgd"), ("ftd", ftd, "sam"))]
err = pd.concat(tables)
viz.trajectory_error_figure(err).show()
print({name: round(accumulated_error(t.to_dict("records")), 3) for name, t in zip(("mtt", "ftd"), tables)})

# %% [markdown]
# ### Exercise 11.1: How much is one image worth?
#
# **Find:** how a distilled set compares with random real images at one image per class. Use `dm` (after section 2)
# and the random real images of the same seed: evaluate both with `evaluate_set(..., [SEED], EvalProtocol())`.
#
# **Check:** DM's set at 1 image per class beats the random real images it started from by at least 5 points

# %%
import workshop

acc_distilled = ...  # your code: test accuracy of a fresh net trained on dm.images(), dm.labels()
acc_random = ...     # your code: the same for random_real(1, SEED)
workshop.check("11.1", acc_distilled=acc_distilled, acc_random=acc_random)

# %% [markdown]
# ### Exercise 11.2: Where the error accumulates
#
# **Find:** how a net trained on MTT's set drifts from the expert over the epochs. From `trajectory_error(...)` on
# `mtt`'s images (with `syn_steps=10`), take the mean parameter distance `dist` to the expert after the first epoch
# and after the last one.
#
# **Check:** the student's mean distance to the expert after the last epoch is more than twice its distance after the first

# %%
dist_first = ...  # your code: mean "dist" over the experts at epoch 1
dist_last = ...   # your code: the same at the last epoch
workshop.check("11.2", dist_first=dist_first, dist_last=dist_last)

# %% [markdown]
# ### Exercise 11.3: What the step size learns
#
# **Find:** what MTT's learnable step size does. Compare `mtt.eval_lr()` with the experts' learning rate
# (`card_sgd["recipe"]["lr"]`).
#
# **Check:** the learned step size ends above the experts' learning rate

# %%
lr_learned = ...  # your code
lr_experts = ...  # your code
workshop.check("11.3", lr_learned=lr_learned, lr_experts=lr_experts)

# %% [markdown]
# ## Recap
#
# - A distilled set is judged by a fresh net trained on it alone, against random real images of the same number
#   and the full data; at one image per class the gain over random real images is large, at ten it is small on
#   digits (ten random digits per class already train a net well).
# - DC and DM score the pixels through random networks (gradients, embeddings); MTT and FTD through expert
#   trajectories recorded once on real data.
# - MTT's loss is a normalised distance between parameter vectors; a PCA of the experts' and the student's
#   parameters shows both paths.
# - The accumulated trajectory error is what a net trained on S alone loses against the expert over the epochs;
#   FTD's flat experts and image average are meant to shrink it (see `bench/RESULTS.md` for how much, here).
