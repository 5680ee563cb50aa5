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
# # Features and similarity: what does the student learn inside?
#
# Logit distillation only looks at the output. **Feature distillation** pulls the student's intermediate features
# towards the teacher's:
#
# - `fitnets` (Romero et al. 2015): a trained regressor maps a student layer onto a teacher "hint" layer (MSE).
# - `vkd` (Miles et al. 2024): an orthogonal projection of the student's embedding onto the normalised teacher's.
# - `rkd` (Park et al. 2019): match the *relations* between examples (distances, angles), not the features.
# - `at`, `ofa` and `minilm` (attention maps, heterogeneous pairs, a language model's attention) are in `lab.kd`
#   too; `lab kd list` shows all of them.
#
# How would we know the student's insides moved towards the teacher's? **Centred kernel alignment** (CKA,
# Kornblith et al. 2019) compares two representations of the same inputs, even of different widths: 1 for
# representations equal up to a rotation and a scale, near 0 for unrelated ones.
#
# 1. CKA's invariances, checked on random data.
# 2. Teacher-vs-student CKA heatmaps: scratch against feature distillation.
# 3. CKA over training.
# 4. Embeddings of teacher and student features, side by side.

# %%
import numpy as np
import pandas as pd
import plotly.express as px
import torch

import lab
from lab.probes import kd as kdprobes
from lab.probes import embeddings as emb
from lab.probes import linear_cka
from lab.viz import kd as kdviz

torch.set_num_threads(1)
SEED = 0

# %% [markdown]
# ## 1. What CKA is invariant to
#
# Linear CKA is invariant to orthogonal transforms and isotropic scaling of either representation, but not to a
# general invertible linear map. With few examples the usual (biased) estimator is inflated; the debiased one
# (Song et al.'s unbiased HSIC) is not.

# %%
g = torch.Generator().manual_seed(SEED)
X = torch.randn(500, 20, generator=g)
Q, _ = torch.linalg.qr(torch.randn(20, 20, generator=g))
A = torch.randn(20, 20, generator=g) * torch.linspace(0.1, 3, 20)
rows = {"X vs X": linear_cka(X, X), "X vs X·Q (orthogonal)": linear_cka(X, X @ Q),
        "X vs 7·X (scaling)": linear_cka(X, 7 * X), "X vs X·A (invertible, anisotropic)": linear_cka(X, X @ A),
        "X vs independent noise": linear_cka(X, torch.randn(500, 20, generator=g))}
display(pd.Series({k: float(v) for k, v in rows.items()}, name="linear CKA").round(3).to_frame())

# %%
small = [(float(linear_cka(a, b)), float(linear_cka(a, b, debiased=True)))
         for a, b in ((torch.randn(24, 50, generator=g), torch.randn(24, 50, generator=g)) for _ in range(20))]
print("independent 24 x 50 representations (true CKA 0): biased %.3f, debiased %.3f (mean over 20 draws)"
      % tuple(np.mean(small, 0)))

# %% [markdown]
# ## 2. Teacher vs student, layer by layer
#
# The digits teacher is a CNN (conv1, conv2, pool, head); the student is a one-hidden-layer MLP (fc1, head). Both
# students below see 200 labelled digits for 600 steps; `rkd` adds the relational loss on the embeddings.

# %%
task = lab.kd.get_task("digits")
teacher = lab.kd.load_teacher("kd/digits/teacher")
cfg = {"steps": 600, "n_train": 200}
runs = {}
for name in ("scratch", "rkd"):
    m = lab.kd.get(name)("kd/digits/teacher", task, cfg, seed=SEED)
    for _ in lab.train(m, callbacks=[lab.runs.loop.ProgressBar(name)]):
        pass
    runs[name] = m
display(kdprobes.compare_runs(runs).round(3))
x = kdprobes.probe_batch(task, n=300, seed=SEED)
for name, m in runs.items():
    kdviz.cka_heatmap(kdprobes.layer_cka(teacher, m.student, x), title=f"Linear CKA, teacher vs {name} student").show()

# %% [markdown]
# The relational loss makes the student's hidden layer more similar to the teacher's pooled features than scratch
# training does (`tests/test_claims_kd_features.py` asserts this over seeds). Whether that buys accuracy is another
# question: `bench/RESULTS.md` has the answer for every method, and for rkd at this scale it does not.
#
# ## 3. CKA over training
#
# `CKATracker` is a loop callback: it records the layer-by-layer CKA every few steps on a fixed probe batch.

# %%
m = lab.kd.get("vkd")("kd/digits/teacher", task, {"steps": 300, "n_train": 200}, seed=SEED)
frames = kdprobes.cka_over_training(m, every=50, n=200)
track = pd.concat(frames)
px.line(track[track.teacher_layer == "pool"], x="step", y="cka", color="student_layer", markers=True,
        title="vkd student vs the teacher's pooled features, over training").show()
kdviz.cka_over_training_figure(frames).show()

# %% [markdown]
# ## 4. Embeddings side by side
#
# PCA of the teacher's pooled features and of the student's hidden layer on the same test digits, the student's
# rotated onto the teacher's (orthogonal Procrustes). UMAP (`method="umap"`) gives tighter clusters but its first
# call costs about a minute; its results are cached on disk, keyed by the features.

# %%
df = emb.teacher_student_embeddings(teacher, runs["rkd"].student, task.x_test, task.y_test, "pool", "fc1", method="pca")
kdviz.embedding_figure(df).show()

# %% [markdown]
# ## Try it
#
# - Swap `rkd` for `fitnets` or `vkd` in section 2. Which layers light up in the heatmap?
# - `layer_cka(..., debiased=True)` on a probe batch of 30 examples: how far do the two estimators disagree?
# - `ofa` distils the CNN teacher into a tiny ViT (`lab.kd.feature.ofa.VIT_STUDENT`): a heterogeneous pair, where CKA is
#   the only way to compare the insides.
