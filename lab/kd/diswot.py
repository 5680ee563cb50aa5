"""DisWOT: choose a student architecture for a teacher WITHOUT training (a search tool, not a KD method).

Paper: Dong, Li, Wei, Liu, Zhang, "DisWOT: Student Architecture Search for Distillation WithOut
Training" (CVPR 2023). The paper finds that the similarity between a RANDOMLY INITIALISED teacher
and a randomly initialised candidate student, measured on one real minibatch, correlates with the
accuracy the candidate reaches after distillation. Two similarities, both higher = better:

- semantic: Grad-CAM-like channel importance from the gradients of the cross-entropy with respect to
  the classifier weights, ``A = dL/dW_head`` (classes x channels); the class-wise outer products
  ``A A^T`` (classes x classes, row-normalised) compared between teacher and student:
  ``semantic = -||S_T - S_S||_F^2 / C^2``;
- relation: the batch Gram matrices of the penultimate features ``f f^T`` (n x n, row-normalised):
  ``relation = -||G_T - G_S||_F^2 / n^2``;

and candidates are ranked by ``total = semantic + relation``.

    from lab.kd import diswot
    df = diswot.search(diswot.default_candidates("digits"), "digits", train_steps=300)
    df.attrs["kendall_tau"]          # rank agreement of the score with the trained accuracy
    diswot.ranking_study().attrs["tau"]   # DisWOT against the parameter count and a 10-step loss, 16 candidates

Fidelity notes:
- the paper searches with an evolutionary algorithm over a large space; :func:`search` scores a
  given list of candidates (it is the inner loop) and, when ``train_steps > 0``, distils each one
  with ``kd`` for a short budget to measure the ranking quality (Kendall tau, ``scipy.stats``).
- both networks are built from their specs with the same seed-derived initialisation (PyTorch's
  default init, not the paper's Gaussian re-init); a module given as the teacher is used with its
  current weights (pass a spec, or ``net.spec()``, for the paper's random teacher).
- the penultimate features are the input of each network's ``head`` (read with
  :func:`lab.nets.hooks.tap_features`, ``inputs=True``), so MLPs, CNNs and ViTs are scored alike; the Grad-CAM weights are the head-weight gradients
  themselves (for a linear head on pooled features these are the class-wise channel importances),
  computed in closed form ``(softmax - onehot)^T f / n`` (equal to autograd's; frozen networks work too).
- the 1/C^2 normalisation of the semantic term is ours, putting both terms on the same scale; the
  paper sums the two (normalised) distances.
- :func:`ranking_study` (``tests/test_kd_diswot.py``; ``bench/diswot_rank.py`` keeps its output): the 16 :func:`candidate_pool` students, kd for
  200 steps, DisWOT on search seeds 1-3: tau 0.393 / 0.377 / 0.377 (mean 0.382, p 0.03-0.04), against the
  parameter count's 0.828 and the kd loss after 10 steps' 0.628, both measured on the same candidates. At 1000
  training steps (seed 0): DisWOT 0.34, parameters 0.81; among the 10 MLPs alone 0.80 vs 0.89, among the 6 CNNs
  0.47 vs 0.87. Variants tried (tau at 200 / 1000 steps, search seeds 0 / 1): 10 initialisations 0.46 / 0.19 and
  0.35 / 0.10; a batch of 256 0.39 / 0.28 and 0.30 / 0.13; the trained teacher instead of a random one 0.48 / 0.03
  and 0.50 / -0.07; the semantic term alone is the total within 0.02; the relation term alone 0.05-0.24. DisWOT
  ranks better than chance but worse than two trivial proxies here: a MISS of the paper's claim at toy scale.
  Where it errs: the CNN candidates are scored most similar to the CNN teacher but distil slowest (cnn8x16, ranked
  first, reaches 0.61 at 200 steps). Most of the score comes from the semantic term; the relation term
  (row-normalised Grams of non-negative ReLU features at initialisation) is two orders of magnitude smaller.
- ``repeats > 1`` averages the score over independent initialisations (seed, seed + 1, ...), which
  reduces the variance of a one-batch, one-init proxy.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lab.errors import LabError
from lab.io import zoo_entry_name
from lab.kd.base import get
from lab.kd.tasks import get_task, logits_of
from lab.nets.classifiers import build_classifier, param_count
from lab.nets.hooks import tap_features


def _net(spec_or_net, seed: int, what: str) -> nn.Module:
    if isinstance(spec_or_net, nn.Module):
        return spec_or_net
    if not isinstance(spec_or_net, dict) or "type" not in spec_or_net:
        raise LabError(f"invalid {what}={spec_or_net!r}; allowed: a network spec (a dict with a 'type', "
                       f"e.g. {{'type': 'clf_mlp', 'in_dim': 64, 'hidden': [32], 'n_classes': 10}}) or a network")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return build_classifier(spec_or_net)


def _head(net: nn.Module, what: str) -> nn.Linear:
    head = getattr(net, "head", None)
    if not isinstance(head, nn.Linear):
        raise LabError(f"invalid {what}: {type(net).__name__} has no linear 'head' layer; allowed: the lab "
                       f"classifiers (clf_mlp, clf_cnn, clf_vit)")
    return head


def probe(net: nn.Module, x: torch.Tensor, y: torch.Tensor, what: str):
    """(head-weight gradient (C, D), penultimate features (n, D)) of ``net`` on one batch (in train mode, the
    features being the input of its linear ``head``)."""
    _head(net, what)
    was = net.training
    net.train()
    try:
        with torch.no_grad():
            out, feats = tap_features(net, x, ["head"], inputs=True)
    finally:
        net.train(was)
    logits = logits_of(out)
    if logits.ndim != 2:
        raise LabError(f"invalid {what}: DisWOT scores classifiers with (n, classes) logits, got shape "
                       f"{tuple(logits.shape)}")
    if logits.shape[1] <= int(y.max()):
        raise LabError(f"invalid {what}: it has {logits.shape[1]} classes but the labels go up to {int(y.max())}; "
                       f"allowed: a classifier with at least {int(y.max()) + 1} classes")
    f = feats["head"].reshape(len(x), -1)
    # d CE(mean) / d W_head = (softmax - onehot)^T f / n (the head is linear): no autograd needed, so frozen
    # networks (requires_grad False) are scored too
    grad = (torch.softmax(logits, -1) - F.one_hot(y, logits.shape[1]).to(logits.dtype)).T @ f / len(x)
    return grad, f


def _rownorm_gram(a: torch.Tensor) -> torch.Tensor:
    return F.normalize(a @ a.T, dim=1)


def score(teacher, student_spec, x_batch: torch.Tensor, y_batch: torch.Tensor, seed: int = 0,
          repeats: int = 1) -> dict:
    """DisWOT similarity of a (randomly initialised) teacher and candidate student on one real batch.

    ``teacher``: a network spec (built with ``seed``: the paper's random teacher) or a network (used as is);
    ``student_spec``: a network spec (built with ``seed``) or a network. Returns
    ``{"semantic", "relation", "total"}`` (floats, higher = more similar; each <= 0).
    """
    if not isinstance(x_batch, torch.Tensor) or not isinstance(y_batch, torch.Tensor):
        raise LabError(f"invalid x_batch/y_batch types {type(x_batch).__name__}/{type(y_batch).__name__}; "
                       f"allowed: torch tensors")
    if x_batch.ndim < 2 or len(x_batch) < 2:
        raise LabError(f"invalid x_batch shape {tuple(x_batch.shape)}; allowed: a batch (n >= 2, ...)")
    if y_batch.shape != (len(x_batch),) or y_batch.dtype not in (torch.long, torch.int64, torch.int32):
        raise LabError(f"invalid y_batch shape {tuple(y_batch.shape)} dtype {y_batch.dtype}; allowed: integer "
                       f"labels of shape ({len(x_batch)},)")
    if not isinstance(repeats, int) or repeats < 1:
        raise LabError(f"invalid repeats={repeats!r}; allowed: an integer >= 1")
    y_batch = y_batch.long()
    sem, rel = [], []
    for r in range(repeats):
        t = _net(teacher, seed + r, "teacher")
        s = _net(student_spec, seed + r, "student_spec")
        dev = next(iter(s.parameters())).device
        gt, ft = probe(t, x_batch.to(next(iter(t.parameters())).device), y_batch.to(next(iter(t.parameters())).device),
                        "teacher")
        gs, fs = probe(s, x_batch.to(dev), y_batch.to(dev), "student_spec")
        if gt.shape[0] != gs.shape[0]:
            raise LabError(f"invalid student_spec: {gs.shape[0]} classes; allowed: the teacher's {gt.shape[0]}")
        gt, gs, ft, fs = (v.cpu().double() for v in (gt, gs, ft, fs))
        C, n = gt.shape[0], len(ft)
        sem.append(-float(((_rownorm_gram(gt) - _rownorm_gram(gs)) ** 2).sum()) / C ** 2)
        rel.append(-float(((_rownorm_gram(ft) - _rownorm_gram(fs)) ** 2).sum()) / n ** 2)
    semantic, relation = float(np.mean(sem)), float(np.mean(rel))
    return {"semantic": semantic, "relation": relation, "total": semantic + relation}


def default_candidates(task: str = "digits") -> dict[str, dict]:
    """Eight MLP/CNN students of varied width and depth for an image task (``digits``)."""
    tk = get_task(task)
    if tk.kind != "classify":
        raise LabError(f"invalid task={tk.name!r} for DisWOT candidates; allowed: classification tasks")
    C = tk.n_classes
    d = int(np.prod(tk.input_shape))
    out = {f"mlp{'x'.join(map(str, h))}": {"type": "clf_mlp", "in_dim": d, "hidden": h, "n_classes": C}
           for h in ([4], [8], [16], [64], [8, 8], [32, 32])}
    if len(tk.input_shape) == 3:
        ch, size = tk.input_shape[0], tk.input_shape[1]
        for c in ([4], [8, 16]):
            out[f"cnn{'x'.join(map(str, c))}"] = {"type": "clf_cnn", "in_channels": ch, "size": size, "channels": c,
                                                 "n_classes": C}
    return out


def kendall_tau(scores, accuracies) -> tuple[float, float]:
    """Kendall's tau (and its p-value) between proxy scores and measured accuracies (``scipy.stats.kendalltau``)."""
    from scipy.stats import kendalltau  # lazy: heavy import (scipy), keeps `import lab` fast

    a, b = np.asarray(scores, float), np.asarray(accuracies, float)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise LabError(f"invalid scores/accuracies shapes {a.shape}/{b.shape}; allowed: two equal-length 1-D "
                       f"sequences of at least 2 values")
    res = kendalltau(a, b)
    return float(res.statistic), float(res.pvalue)


def search(candidates, task="digits", teacher=None, batch: int = 64, seed: int = 0, repeats: int = 1,
           train_steps: int = 0, train_config: dict | None = None, train_teacher: str | None = None,
           train_seeds=(0,)) -> "pandas.DataFrame":
    """Score and rank candidate students for ``task``'s teacher without training.

    ``candidates``: a dict name -> network spec (or a list of specs). ``teacher``: a spec or network (default:
    the task's teacher spec, randomly initialised). One real training minibatch of ``batch`` examples
    (drawn with ``seed``). With ``train_steps > 0`` each candidate is also distilled with ``kd``
    (``train_config`` overrides, from ``train_teacher``, default ``kd/<task>/teacher``; the mean over
    ``train_seeds``) and the frame gets an ``acc`` column and ``attrs["kendall_tau"]``,
    ``attrs["kendall_p"]``. Rows are sorted by ``total`` (best first) with a ``rank`` column.
    """
    import pandas as pd  # lazy: heavy import (pandas), only needed for the search table

    tk = get_task(task)
    if tk.kind != "classify":
        raise LabError(f"invalid task={tk.name!r} for DisWOT; allowed: classification tasks")
    if isinstance(candidates, (list, tuple)):
        candidates = {f"cand{i}": c for i, c in enumerate(candidates)}
    if not isinstance(candidates, dict) or len(candidates) < 1:
        raise LabError(f"invalid candidates={candidates!r}; allowed: a non-empty dict name -> network spec")
    if not isinstance(batch, int) or not 2 <= batch <= len(tk.x_train):
        raise LabError(f"invalid batch={batch!r}; allowed: an integer from 2 to {len(tk.x_train)}")
    if not isinstance(train_steps, int) or train_steps < 0:
        raise LabError(f"invalid train_steps={train_steps!r}; allowed: an integer >= 0 (0: no training)")
    teacher = dict(tk.teacher_net) if teacher is None else teacher
    g = torch.Generator().manual_seed(int(seed))
    idx = torch.randperm(len(tk.x_train), generator=g)[:batch]
    x, y = tk.x_train[idx], tk.y_train[idx]
    rows = []
    for name, spec in candidates.items():
        sc = score(teacher, spec, x, y, seed=seed, repeats=repeats)
        net = _net(spec, seed, "candidate")
        rows.append({"name": name, "params": param_count(net), **sc,
                     "spec": spec if isinstance(spec, dict) else net.spec()})
    df = pd.DataFrame(rows)
    if train_steps:
        df["acc"] = [float(np.mean([_distil(spec, tk, train_steps, s, train_config, train_teacher).evaluate()["acc"]
                                    for s in train_seeds])) for spec in df["spec"]]
        tau, p = kendall_tau(df["total"], df["acc"])
        df.attrs["kendall_tau"], df.attrs["kendall_p"] = tau, p
    df = df.sort_values("total", ascending=False).reset_index(drop=True)
    df.insert(1, "rank", np.arange(1, len(df) + 1))
    return df


def _distil(spec: dict, tk, steps: int, seed: int, train_config: dict | None, teacher: str | None):
    """``spec`` distilled with ``kd`` from the task's teacher for ``steps`` steps (the trained method, returned)."""
    import lab  # lazy: lab.train is in lab.runs, a layer above lab.kd (an upward import at load time)

    m = get("kd")(teacher or zoo_entry_name("kd", tk.name), tk,
                  {**(train_config or {}), "steps": steps, "student": dict(spec)}, seed=seed)
    for _ in lab.train(m):
        pass
    return m


def candidate_pool(task: str = "digits") -> dict[str, dict]:
    """Sixteen students for a ranking study on an image task: the eight :func:`default_candidates` plus MLP[32],
    MLP[128], MLP[16, 16], MLP[64, 64] and CNN[8], CNN[16], CNN[4, 8], CNN[16, 32] (210 to 9,610 parameters)."""
    out = default_candidates(task)
    tk = get_task(task)
    if len(tk.input_shape) != 3:
        raise LabError(f"invalid task={tk.name!r} for the DisWOT candidate pool; allowed: image classification tasks")
    C, d = tk.n_classes, int(np.prod(tk.input_shape))
    for h in ([32], [128], [16, 16], [64, 64]):
        out[f"mlp{'x'.join(map(str, h))}"] = {"type": "clf_mlp", "in_dim": d, "hidden": h, "n_classes": C}
    ch, size = tk.input_shape[0], tk.input_shape[1]
    for c in ([8], [16], [4, 8], [16, 32]):
        out[f"cnn{'x'.join(map(str, c))}"] = {"type": "clf_cnn", "in_channels": ch, "size": size, "channels": c,
                                             "n_classes": C}
    return out


def ranking_study(candidates=None, task: str = "digits", train_steps: int = 200, search_seeds=(1, 2, 3),
                  repeats: int = 3, batch: int = 64, baseline_steps: int = 10, n_baseline: int = 512,
                  train_seed: int = 0, train_config: dict | None = None) -> "pandas.DataFrame":
    """How well DisWOT ranks candidates, against two cheap baselines measured in the same study.

    Each candidate (default :func:`candidate_pool`) is distilled with ``kd`` for ``train_steps`` steps (batch 64
    unless ``train_config`` says otherwise; seed ``train_seed``) and its test accuracy is the truth to rank by.
    Proxies, all computed before that training: DisWOT's ``total`` for each of ``search_seeds`` (a different
    minibatch and initialisations each, ``repeats`` inits per seed; columns ``total_s<seed>``); the parameter
    count (``params``); and ``early_loss``, the ``kd`` training objective on the first ``n_baseline`` training
    examples after ``baseline_steps`` steps of the same training (lower ranks higher). Returns the candidates
    with those columns and ``acc``; ``attrs["tau"]`` / ``attrs["p"]`` hold Kendall's tau (and p) of each proxy
    with ``acc`` (``diswot`` is the mean over the search seeds; ``diswot_per_seed`` the list).
    """
    import pandas as pd  # lazy: heavy import (pandas), only needed for the table

    tk = get_task(task)
    candidates = candidate_pool(task) if candidates is None else candidates
    if not isinstance(baseline_steps, int) or not 1 <= baseline_steps < max(int(train_steps), 2):
        raise LabError(f"invalid baseline_steps={baseline_steps!r}; allowed: an integer from 1 to train_steps - 1")
    if not isinstance(search_seeds, (list, tuple)) or not search_seeds:
        raise LabError(f"invalid search_seeds={search_seeds!r}; allowed: a non-empty list of integer seeds")
    cfg = {"batch": 64, **(train_config or {})}
    df = None
    for s in search_seeds:
        sc = search(candidates, tk, batch=batch, seed=int(s), repeats=repeats).set_index("name")
        if df is None:
            df = sc[["params", "spec"]].copy()
        df[f"total_s{s}"] = sc["total"]
    x, y = tk.x_train[:n_baseline], tk.y_train[:n_baseline]
    early, acc = [], []
    for spec in df["spec"]:
        m = _distil(spec, tk, baseline_steps, train_seed, cfg, None)
        with torch.no_grad():
            early.append(float(m.compute({"x": x, "y": y}, baseline_steps)[0]))
        acc.append(_distil(spec, tk, train_steps, train_seed, cfg, None).evaluate()["acc"])
    df["early_loss"], df["acc"] = early, acc
    df = df.reset_index()
    taus = {f"s{s}": kendall_tau(df[f"total_s{s}"], df["acc"]) for s in search_seeds}
    tau = {"diswot": float(np.mean([t for t, _ in taus.values()])),
           "diswot_per_seed": [t for t, _ in taus.values()],
           "params": kendall_tau(df["params"], df["acc"])[0],
           "early_loss": kendall_tau(-df["early_loss"], df["acc"])[0]}
    df.attrs["tau"] = tau
    df.attrs["p"] = {"diswot_per_seed": [p for _, p in taus.values()],
                     "params": kendall_tau(df["params"], df["acc"])[1],
                     "early_loss": kendall_tau(-df["early_loss"], df["acc"])[1]}
    return df


__all__ = ["score", "search", "kendall_tau", "default_candidates", "candidate_pool", "ranking_study", "probe"]
