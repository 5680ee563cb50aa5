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
# # 03 · Features, relations and similarity
#
# Logit distillation (notebooks 01 and 02) only looks at what comes out of the teacher. **Feature distillation**
# also pulls the student's *insides* towards the teacher's: a middle layer through a learned regressor (FitNets), where
# the network looks (attention transfer), an embedding through an orthogonal projection (V_kD), the geometry of a
# batch (RKD), class predictions read off every stage (OFA), a transformer's attention pattern (MiniLM). To know
# whether the insides moved we need a similarity that compares layers of different widths and architectures:
# **centred kernel alignment** (CKA). And one can even pick the student's architecture by comparing *untrained*
# networks with the teacher (DisWOT). Everything here runs on the 8x8 digits (a CNN teacher from the zoo, students
# with 200 labelled images) and on a synthetic language (a tiny transformer teacher).
#
# **Learning goals.** After this notebook you can:
# 1. measure how similar two layers are with linear CKA, and say what it ignores (rotations, scale), what it does not
#    (an anisotropic stretch), and why the debiased estimator is needed with few examples;
# 2. train each feature method of `lab.kd` and draw the very thing its loss matches: a regressed hint, an attention
#    map, a projected embedding, a distance matrix, a per-stage prediction, an attention pattern;
# 3. tell "the student's features moved towards the teacher's" apart from "the student became more accurate", with
#    numbers measured in the same run;
# 4. rank candidate student architectures for a teacher without training them (DisWOT), and check the ranking.
#
# **In the app:** [rkd against scratch and kd, with CKA heatmaps and embeddings](http://localhost:8501/Knowledge_distillation?task=digits&method=rkd&n_train=200) ·
# [fitnets](http://localhost:8501/Knowledge_distillation?task=digits&method=fitnets&n_train=200) ·
# [vkd](http://localhost:8501/Knowledge_distillation?task=digits&method=vkd&n_train=200) ·
# [at with a CNN student](http://localhost:8501/Knowledge_distillation?task=digits&method=at&n_train=200) ·
# [ofa with a ViT student](http://localhost:8501/Knowledge_distillation?task=digits&method=ofa&n_train=200) ·
# [minilm on the language task](http://localhost:8501/Knowledge_distillation?task=language&method=minilm)
# (start the app with `make demo`).

# %% tags=["parameters"]
FAST = False  # True: the test suite's quick mode (shorter training, smaller probes); False: the workshop run

# %%
import numpy as np
import pandas as pd
import plotly.express as px
import torch
import torch.nn.functional as F

import lab
import lab.probes  # `import lab` does not load probes and viz
import lab.viz
import workshop
from lab.kd import diswot
from lab.kd.feature.at import CNN_STUDENT, at_vector, attention_map
from lab.kd.feature.base import run_with_features
from lab.kd.feature.minilm import attention_kl
from lab.kd.feature.ofa import VIT_STUDENT
from lab.metrics.similarity import linear_cka
from lab.probes import embeddings as emb
from lab.probes import kd as kdprobes
from lab.viz import kd as kdviz
from lab.viz.images import image_grid_figure

torch.set_num_threads(1)  # toy sizes: one thread is as fast and leaves the other core free
SEED = 0
STEPS = 150 if FAST else 600        # training steps of each digits student
LM_STEPS = 100 if FAST else 400     # training steps of each language student
N_PROBE = 200 if FAST else 360      # test digits CKA is measured on (360: the whole test split)

task = lab.kd.get_task("digits")
teacher = lab.kd.load_teacher("kd/digits/teacher")
x_probe = kdprobes.probe_batch(task, n=N_PROBE, seed=SEED)
print(task, "| teacher layers:", teacher.feature_layers)
print("feature methods:", [m for m in lab.kd.list_methods() if "feature" in lab.kd.get(m).__module__])


def train(name, steps=STEPS, task="digits", **config):
    """Train the lab.kd method ``name`` on ``task`` (digits: 200 labelled images) from the task's zoo teacher.
    Returns the method and its loss terms at every step (a DataFrame)."""
    config = {"steps": steps, **({"n_train": 200} if task == "digits" else {}), **config}
    m = lab.kd.get(name)(f"kd/{task}/teacher", task, config, seed=SEED)
    losses = pd.DataFrame([{"step": s.it, **s.out.losses} for s in lab.train(m)])
    return m, losses


def feats(net, x, layer):
    """One layer's features of ``net`` on ``x`` (eval mode, no gradients), unflattened."""
    net.eval()
    return run_with_features(net, x, [layer], grad=False)[1][layer]


# %% [markdown]
# ## 1. What CKA sees and what it ignores
#
# Linear CKA (Kornblith et al. 2019) compares two representations of the same n inputs, X (n x p) and Y (n x q),
# through their centred Gram matrices: `CKA = <K, L> / (|K| |L|)` with `K = Xc Xc^T`, `L = Yc Yc^T`. It is 1 for
# representations equal up to a rotation and an isotropic scale, whatever their widths, and near 0 for unrelated ones.
# It is *not* invariant to a general invertible linear map: stretching some directions more than others changes it.

# %%
g = torch.Generator().manual_seed(SEED)
X = torch.randn(500, 20, generator=g)
Q, _ = torch.linalg.qr(torch.randn(20, 20, generator=g))
A = torch.randn(20, 20, generator=g) * torch.linspace(0.1, 3, 20)
invariances = pd.Series({
    "X vs X": linear_cka(X, X),
    "X vs X·Q (rotation)": linear_cka(X, X @ Q),
    "X vs 7·X (scale)": linear_cka(X, 7 * X),
    "X vs [X, 0] (wider, zero-padded)": linear_cka(X, torch.cat([X, torch.zeros(500, 12)], 1)),
    "X vs X·A (anisotropic stretch)": linear_cka(X, X @ A),
    "X vs independent noise": linear_cka(X, torch.randn(500, 20, generator=g)),
}, name="linear CKA").astype(float)
px.bar(invariances.round(3), orientation="h", text_auto=True, title="Linear CKA of X against transforms of X",
       labels={"value": "linear CKA", "index": ""}).update_layout(showlegend=False, height=330).show()
assert invariances["X vs X·Q (rotation)"] > 0.999 > invariances["X vs X·A (anisotropic stretch)"], \
    "CKA should ignore a rotation but not an anisotropic stretch"

# %% [markdown]
# With few examples the usual (biased) estimator is inflated: two *independent* representations look similar when
# n is not much larger than their width. The debiased estimator (Song et al.'s unbiased HSIC) removes the bias.

# %%
small = np.array([(linear_cka(a, b), linear_cka(a, b, debiased=True)) for a, b in
                  ((torch.randn(24, 50, generator=g), torch.randn(24, 50, generator=g)) for _ in range(20))])
print(f"independent 24 x 50 representations (true CKA 0): biased {small[:, 0].mean():.3f}, "
      f"debiased {small[:, 1].mean():.3f} (mean over 20 draws)")

# %% [markdown]
# ### Exercise 03.1: how many examples does biased CKA need?
#
# **Find:** how many examples the biased linear CKA needs before two independent 50-d random representations
# (`torch.randn(n, 50)`, drawn twice) no longer look similar. Try n = 24, 50, 100, 200, 400, ...
#
# **Check:** at your n (more than 24 examples) the biased CKA of two independent 50-d representations is below 0.2, and below its value at n = 24

# %%
n = None          # your number of examples
cka_at_n = None   # mean biased linear_cka of two independent (n, 50) draws, over 20 pairs
cka_at_24 = None  # the same at n = 24
workshop.check("03.1", n=n, cka_at_n=cka_at_n, cka_at_24=cka_at_24)

# %% [markdown]
# ## 2. FitNets: a hint through a regressor
#
# `fitnets` (Romero et al. 2015) trains a **regressor** that maps the student's guided layer (the MLP's `fc1`, 32
# units) onto the teacher's hint layer (here `pool`, 256 numbers), and adds `hint_weight · MSE(r(f_S), f_T)` to
# Hinton KD. Below: the loss terms while training, then the hint itself, the teacher's pooled features of six test
# digits next to what the regressor makes of the student's `fc1`.

# %%
fitnets, fit_losses = train("fitnets", teacher_layer="pool", hint_weight=10.0)
px.line(fit_losses, x="step", y=[c for c in ("hint", "kd", "ce") if c in fit_losses], log_y=True,
        title="fitnets: the loss terms while training").show()

x6 = task.x_test[:6]
with torch.no_grad():
    f_s = feats(fitnets.student, x6, "fc1")
    hint = fitnets.regressor(f_s)
    target = fitnets.regressor.target(feats(teacher, x6, "pool"), f_s)
px.imshow(torch.stack([target, hint])[:, :, :64].numpy(), facet_col=0, aspect="auto", color_continuous_scale="RdBu_r",
          color_continuous_midpoint=0, labels={"x": "feature", "y": "test digit"},
          title="The hint: teacher pool features (left) and the regressor's image of the student's fc1 (right), first 64"
          ).for_each_annotation(lambda a: a.update(text=["teacher pool (target)", "regressor(student fc1)"][int(a.text.split("=")[-1])])).show()
print(f"hint MSE on these digits: {float(F.mse_loss(hint, target)):.4f}; the same with the regressor's output "
      f"shuffled across digits: {float(F.mse_loss(hint[torch.randperm(6, generator=g)], target)):.4f}")

# %% [markdown]
# What to look for: the regressor reproduces the teacher's *pattern* across digits (the columns light up for the same
# digits), not each value. The regressor is thrown away after training; only what it forced into `fc1` stays.
#
# ### Exercise 03.2: does the hint reach the student's layer?
#
# The hint is matched through the regressor, so it need not make `fc1` itself resemble the teacher's `pool`.
#
# **Find:** a FitNets hint weight and a step budget at which the hint makes the student's hidden layer more similar
# to the teacher's pooled features than scratch training does. Use `train("fitnets", steps=..., teacher_layer="pool",
# hint_weight=...)` and `train("scratch", steps=...)`, then `kdprobes.layer_cka(teacher, student, x_probe, ["pool"],
# ["fc1"])`.
#
# **Check:** the fitnets student's fc1-vs-pool CKA is above the scratch student's, both trained for your number of steps

# %%
cka_fitnets = None  # CKA of your fitnets student's fc1 with the teacher's pool
cka_scratch = None  # the same for a scratch student trained for the same number of steps
workshop.check("03.2", cka_fitnets=cka_fitnets, cka_scratch=cka_scratch)

# %% [markdown]
# ## 3. Attention transfer: where the network looks
#
# `at` (Zagoruyko & Komodakis 2017) needs spatial features, so the student is a small CNN (channels 4 and 8). The
# attention map of a conv layer is the mean over channels of the squared activation, one number per pixel;
# `at_weight · |Q_S/|Q_S| - Q_T/|Q_T||²` pulls the student's normalised maps to the teacher's. Below, for eight test
# digits: the input, the teacher's `conv2` map, the AT student's and a scratch CNN student's.

# %%
at_run, at_losses = train("at", student=CNN_STUDENT, at_weight=50.0)
cnn_scratch, _ = train("scratch", student=CNN_STUDENT)

x8 = task.x_test[:8]


def attention_image(net, x, layer="conv2"):
    """AT's attention maps of ``net`` on ``x``, each stretched to [-1, 1] (its own min to max) for drawing:
    (n, 1, H, W)."""
    a = attention_map(feats(net, x, layer))
    lo, hi = a.amin(dim=(1, 2), keepdim=True), a.amax(dim=(1, 2), keepdim=True)
    return (2 * (a - lo) / (hi - lo).clamp_min(1e-12) - 1)[:, None].numpy()


rows = {"input": x8.numpy(), "teacher conv2": attention_image(teacher, x8),
        "at student conv2": attention_image(at_run.student, x8),
        "scratch student conv2": attention_image(cnn_scratch.student, x8)}
image_grid_figure(np.stack(list(rows.values())), list(rows), [f"y = {int(y)}" for y in task.y_test[:8]],
                  title="Attention maps (bright = more attention)", pixel=8).show()
print(f"test accuracy: at {at_run.evaluate()['acc']:.3f}, scratch CNN {cnn_scratch.evaluate()['acc']:.3f} "
      "(same CNN, same steps)")

# %% [markdown]
# The AT student's maps look like the teacher's; the scratch student's pick other pixels. Accuracy is another
# matter. In the quick run (150 steps) the AT student lags far behind scratch: the tiny CNN spends its first steps
# imitating where the teacher looks before it has learnt the classes. With 600 steps (the workshop run) it catches
# up, and across seeds it ends within noise of scratch (`lab/kd/feature/at.py`; the paper's weight, 1000, swamps
# the cross-entropy of this tiny CNN, so the lab uses 50).
#
# ### Exercise 03.3: how close are the attention maps?
#
# **Find:** whether attention transfer makes the student look where the teacher looks, even while its accuracy lags.
# Measure the mean, over the probe digits `x_probe`, of the squared distance between the student's and the teacher's
# normalised `conv2` maps: `at_vector(attention_map(features))` gives the normalised map of each digit.
#
# **Check:** the at student's mean attention-map distance to the teacher's conv2 is below the scratch CNN student's

# %%
dist_at = None       # mean |q_at - q_teacher|^2 over x_probe
dist_scratch = None  # the same for cnn_scratch
workshop.check("03.3", dist_at=dist_at, dist_scratch=dist_scratch)

# %% [markdown]
# ## 4. V_kD: an orthogonal projection of the embedding
#
# `vkd` (Miles et al. 2024) maps the student's embedding (32-d) into the teacher's (256-d) with a **semi-orthogonal**
# linear projector, which can rotate but not stretch, and matches it to the layer-normalised teacher embedding
# (smooth L1), plus KD. CKA is invariant to exactly such maps, so CKA over training is the natural view; the
# `CKATracker` callback records the layer-by-layer CKA every few steps on a fixed probe batch.

# %%
vkd = lab.kd.get("vkd")("kd/digits/teacher", task, {"steps": STEPS, "n_train": 200}, seed=SEED)
vkd_before = lab.kd.get("vkd")("kd/digits/teacher", task, {"steps": STEPS, "n_train": 200}, seed=SEED)  # untrained
frames = kdprobes.cka_over_training(vkd, every=max(STEPS // 6, 1), n=N_PROBE)
track = pd.concat(frames)
px.line(track[track.teacher_layer == "pool"], x="step", y="cka", color="student_layer", markers=True,
        title="vkd: student layers vs the teacher's pooled features, over training").show()
kdviz.cka_over_training_figure(frames, title="vkd: CKA over training (slider: step)").show()

W = vkd.projector.weight.detach()  # (256, 32): the columns stay orthonormal
print(f"projector: max |W^T W - I| = {float((W.T @ W - torch.eye(W.shape[1])).abs().max()):.1e}")

# %%
batch = {"x": task.x_test[:64], "y": task.y_test[:64]}
pts = []
for when, m in (("untrained", vkd_before), ("trained", vkd)):
    with torch.no_grad():
        _, _, e_s, e_t = m.embeddings(batch)
        proj, tgt = m.projector(e_s), F.layer_norm(e_t, e_t.shape[-1:])
    r = float(torch.corrcoef(torch.stack([proj.flatten(), tgt.flatten()]))[0, 1])
    pts.append(pd.DataFrame({"projected student": proj.flatten()[::8], "normalised teacher": tgt.flatten()[::8],
                             "run": f"{when} (correlation {r:.2f})"}))
px.scatter(pd.concat(pts), x="normalised teacher", y="projected student", facet_col="run", opacity=0.3,
           title="vkd's feature term: the projected student embedding against its target, entry by entry").show()

# %% [markdown]
# ## 5. RKD: match the relations, not the features
#
# `rkd` (Park et al. 2019) never compares a student feature with a teacher feature. It compares the *geometry of the
# batch*: pairwise distances (each divided by the batch's mean distance) and the angles of all triplets. Below, the
# normalised distance matrices of 40 test digits sorted by class: the teacher's pooled features, a scratch student's
# `fc1` and the RKD student's `fc1`. The block structure is the classes.

# %%
rkd, rkd_losses = train("rkd")
scratch, _ = train("scratch")

order = torch.argsort(task.y_test[:40], stable=True)
x40 = task.x_test[:40][order]


def distance_matrix(net, layer):
    e = kdprobes.features(net, x40, [layer])[layer]
    d = torch.cdist(e, e)
    return (d / d[~torch.eye(len(d), dtype=torch.bool)].mean()).numpy()


mats = {"teacher pool": distance_matrix(teacher, "pool"), "scratch fc1": distance_matrix(scratch.student, "fc1"),
        "rkd fc1": distance_matrix(rkd.student, "fc1")}
fig = px.imshow(np.stack(list(mats.values())), facet_col=0, color_continuous_scale="Viridis",
                title="Normalised pairwise distances of 40 test digits, sorted by class")
fig.for_each_annotation(lambda a: a.update(text=list(mats)[int(a.text.split("=")[-1])])).show()
gap = {k: float(np.abs(v - mats["teacher pool"]).mean()) for k, v in mats.items() if k != "teacher pool"}
print("mean |distance - teacher's distance|:", {k: round(v, 3) for k, v in gap.items()})

# %% [markdown]
# The same comparison for every pair of layers, as CKA heatmaps (teacher layers down, student layers across):

# %%
ckas = {name: kdprobes.layer_cka(teacher, m.student, x_probe) for name, m in (("scratch", scratch), ("rkd", rkd))}
for name, df in ckas.items():
    kdviz.cka_heatmap(df, title=f"Linear CKA, teacher vs {name} student").show()
display(kdprobes.compare_runs({"scratch": scratch, "rkd": rkd, "fitnets": fitnets, "vkd": vkd}).round(3))
fc1_pool = {name: float(df.query("teacher_layer == 'pool' and student_layer == 'fc1'").cka.iloc[0])
            for name, df in ckas.items()}
assert fc1_pool["rkd"] > fc1_pool["scratch"], \
    f"rkd should make fc1 more similar to the teacher's pool than scratch does: {fc1_pool}"

# %% [markdown]
# The relational loss makes the student's hidden layer more similar to the teacher's pooled features than scratch
# training does (`tests/test_claims_kd_features.py` asserts this over seeds). Whether that buys accuracy is another
# question: compare the `last_acc` column above. At this scale it does not (`bench/RESULTS.md` has every method):
# similar insides are not the same thing as better outputs.
#
# ## 6. OFA: heterogeneous teacher and student meet in logit space
#
# A CNN teacher and a small **ViT** student (4x4 patches tokens, two blocks) have features of different kinds: a hint
# between them compares apples with pears. `ofa` (Hao et al. 2023) hangs a small **branch** on every student stage
# that predicts the classes, and pulls every branch (and the head) to the teacher's prediction. Below: how well each
# branch, read alone, classifies the test digits, and the CKA of the two architectures.

# %%
ofa, ofa_losses = train("ofa", student=VIT_STUDENT)
with torch.no_grad():
    ofa.student.eval()
    logits, stage_feats = run_with_features(ofa.student, task.x_test, ofa.stages, grad=False)
    stage_acc = {f"branch on {n}": float((ofa.branches[n](stage_feats[n]).argmax(-1) == task.y_test).float().mean())
                 for n in ofa.stages}
stage_acc["student head"] = float((logits.argmax(-1) == task.y_test).float().mean())
px.bar(x=list(stage_acc), y=list(stage_acc.values()), text_auto=".3f", labels={"x": "", "y": "test accuracy"},
       title="ofa: each stage's branch, read alone, against the student's own head").show()
kdviz.cka_heatmap(kdprobes.layer_cka(teacher, ofa.student, x_probe), title="Linear CKA, CNN teacher vs ViT student").show()

# %% [markdown]
# The branches are trained with the student and discarded afterwards; what they do is push class information into
# the early blocks. CKA is the only way to compare the two architectures' insides: no layer of the ViT has the
# shape of a layer of the CNN.
#
# ## 7. MiniLM: distil a transformer's attention
#
# On the language task (a synthetic hidden-Markov language; the teacher a 2-layer transformer of width 64, the
# student 1 layer of width 8), `minilm` (Wang et al. 2020) matches the **last layer's self-attention distributions**
# and its **value relations** `softmax(V V^T / sqrt d)`, head by head: both are (positions x positions) whatever the
# widths. Below: the last-layer attention of one test sequence, per head, for the teacher, the MiniLM student and a
# scratch student.

# %%
lm_task = lab.kd.get_task("language")
lm_teacher = lab.kd.load_teacher("kd/language/teacher")
minilm, _ = train("minilm", steps=LM_STEPS, task="language", batch=32)
lm_scratch, _ = train("scratch", steps=LM_STEPS, task="language", batch=32)

seq = lm_task.x_test[:64]
att = {}
with torch.no_grad():
    for name, net in (("teacher", lm_teacher), ("minilm", minilm.student), ("scratch", lm_scratch.student)):
        net.eval()
        att[name] = net(seq, return_attention=True)[1][-1]  # last layer: (n, heads, L, L)
L = 16
panels = [att[name][0, h, :L, :L].numpy() for name in att for h in range(att[name].shape[1])]
titles = [f"{name}, head {h}" for name in att for h in range(att[name].shape[1])]
fig = px.imshow(np.stack(panels), facet_col=0, facet_col_wrap=2, color_continuous_scale="Blues", height=800,
                labels={"x": "key position", "y": "query position"},
                title=f"Last-layer attention on one test sequence (first {L} positions)")
fig.for_each_annotation(lambda a: a.update(text=titles[int(a.text.split("=")[-1])])).show()
lm_table = pd.DataFrame({name: {"attention KL to the teacher": float(attention_kl(att["teacher"], att[name])),
                                "KL(true law || model)": m.evaluate()["kl_truth"]}
                         for name, m in (("minilm", minilm), ("scratch", lm_scratch))}).T
display(lm_table.round(3))

# %% [markdown]
# MiniLM's attention is closer to the teacher's (the first column). Whether that already helps the next-token
# predictions depends on the budget: in the workshop run (400 steps) it does, in the quick run it may not yet.
#
# ## 8. Embeddings side by side
#
# PCA of the teacher's pooled features and of the RKD student's hidden layer on all test digits, the student's
# rotated onto the teacher's (orthogonal Procrustes), coloured by label. UMAP (`method="umap"`) gives tighter
# clusters, but its first call in a process costs about a minute (compilation); its results are cached on disk.

# %%
df = emb.teacher_student_embeddings(teacher, rkd.student, task.x_test, task.y_test, "pool", "fc1", method="pca")
kdviz.embedding_figure(df, title="Test digits: teacher pool vs rkd student fc1 (PCA)").show()

# %% [markdown]
# ## 9. DisWOT: choose the student before training it
#
# DisWOT (Dong et al. 2023) scores a candidate student by comparing a *randomly initialised* copy of it with a randomly
# initialised teacher on one real batch of 64 digits: the class-by-class similarity of their head gradients
# (semantic) and the example-by-example similarity of their penultimate features (relation). Higher is more similar;
# the paper finds it predicts the accuracy after distillation. `lab.kd.diswot` is a search tool, not a KD method.
# In the workshop run each candidate is then distilled with `kd` for 200 steps, and Kendall's tau says how well the
# training-free score ranked them.

# %%
candidates = diswot.default_candidates("digits")
ranking = diswot.search(candidates, "digits", batch=64, seed=SEED, repeats=10, train_steps=0 if FAST else 200)
display(ranking.drop(columns="spec").round(4))
px.bar(ranking, x="name", y=["semantic", "relation"], title="DisWOT scores of the candidates (higher = more similar "
       "to the teacher at initialisation)", labels={"value": "score", "name": "candidate"}).show()
if "acc" in ranking:
    px.scatter(ranking, x="total", y="acc", text="name", size="params",
               title=f"DisWOT score against accuracy after 200 steps of kd: Kendall tau "
                     f"{ranking.attrs['kendall_tau']:.2f}").update_traces(textposition="top center").show()

# %% [markdown]
# What to look for: the semantic term does almost all the work (the relation bars barely show). In the workshop run
# the MLPs come out in the order of their accuracy after distillation (wider and deeper: more similar to the teacher
# at initialisation, and more accurate), while the CNN candidates are scored high but train slowly in 200 steps;
# that is where the ranking errs. A proxy computed at initialisation cannot know the training budget.
#
# ### Exercise 03.4: design a student DisWOT prefers
#
# **Find:** a student architecture, smaller than the teacher, that DisWOT ranks above every default candidate, without
# training anything. A spec is a dict such as `{"type": "clf_mlp", "in_dim": 64, "hidden": [32], "n_classes": 10}` or
# `{"type": "clf_cnn", "in_channels": 1, "size": 8, "channels": [8, 16], "n_classes": 10}` (the teacher is
# `teacher.spec()`); score it like the defaults, `diswot.search({"mine": spec}, "digits", batch=64, seed=SEED,
# repeats=10)`, whose `params` column counts its parameters. (Why smaller? A copy of the teacher's own architecture
# scores a perfect 0: built from the same seed, it *is* the random teacher.)
#
# **Check:** your candidate has fewer parameters than the teacher and a DisWOT total score above the best of the eight default candidates

# %%
teacher_params = sum(p.numel() for p in teacher.parameters())
score_yours = None   # the "total" of your candidate
params_yours = None  # its "params"
best_default = None  # the best "total" in `ranking`
workshop.check("03.4", score_yours=score_yours, params_yours=params_yours, best_default=best_default,
               teacher_params=teacher_params)

# %% [markdown]
# ## Recap
#
# - Linear CKA compares layers of any widths and architectures; it ignores rotations and scale, not stretches, and
#   with few examples only its debiased estimator is trustworthy.
# - Each feature method matches something else: a regressed hint (`fitnets`), attention maps (`at`), an
#   orthogonally projected embedding (`vkd`), batch distances and angles (`rkd`), per-stage class predictions
#   (`ofa`), last-layer attention and value relations (`minilm`).
# - Matching insides moves the insides (CKA, distance matrices, attention maps all move towards the teacher's) but
#   does not by itself buy accuracy at this scale: measure both.
# - DisWOT ranks students at initialisation, without training; check its ranking against short distillation runs.
