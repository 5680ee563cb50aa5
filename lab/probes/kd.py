"""Knowledge-distillation probes: teacher-vs-student layer CKA (once, or over training), and the comparison of
trained KD runs. Data only (tidy DataFrames); the figures are in ``lab.viz.kd``.

- ``layer_cka(teacher, student, x)``: linear CKA between every tapped teacher layer and every student layer on the
  same inputs (features read with :func:`lab.nets.hooks.tap_features`, flattened per example), as a long table
  (teacher_layer, student_layer, cka) in layer order. CKA compares representations of different widths and
  architectures (a CNN teacher, an MLP student), which is why OFA-KD uses it to show that heterogeneous
  teachers and students diverge in feature space.
- ``CKATracker``: a training-loop callback recording ``layer_cka`` of ``method.teacher`` vs ``method.student`` every
  ``every`` steps (and at step 0) on a fixed probe batch of the task's test split; ``cka_over_training`` runs it.
- ``compare_runs``: best and last test metrics of trained methods (from ``KDMethod.summary()``);
  ``history_table``: their periodic evaluations in one tidy table; ``reliability_tables``: the reliability
  tables (``lab.probes.calibration.reliability``) of each student, and of the teacher, on the test split.
- ``disagreements(teacher, students, task)``: one row per test prediction (a digit; a token position on the
  language task) with the teacher's and each student's prediction, confidence, KL(teacher || student) and agree
  flag; ``disagreement_summary`` (per student: how many, how far), ``confusion`` (teacher-vs-student predictions)
  and ``disagreement_examples`` (the most disagreeing rows, with their images or token contexts) for the views.

Paper: Kornblith et al. 2019, "Similarity of Neural Network Representations Revisited" (linear CKA); the
minibatch and debiased estimators are those of ``lab.probes.similarity``.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from lab.errors import LabError
from lab.metrics.similarity import cka_matrix
from lab.metrics.threads import blas_threads
from lab.nets.hooks import layer_names, tap_features
from lab.runs.loop import Callback, LoopState, train

METRICS = ("acc", "nll", "ece", "agree", "kl_truth")


def _layers(net, layers, who: str) -> list[str]:
    if layers is None:
        return layer_names(net)
    if isinstance(layers, str):
        layers = [layers]
    layers = list(layers)
    if not layers:
        raise LabError(f"{who}_layers is empty; allowed: None (every feature layer) or names from "
                       f"{', '.join(layer_names(net))}")
    return layers


def _flatten(out, name: str) -> torch.Tensor:
    if isinstance(out, (tuple, list)):  # blocks that return (hidden, attention): the hidden state
        out = out[0]
    if not torch.is_tensor(out):
        raise LabError(f"layer {name!r} returned {type(out).__name__}; allowed: layers whose output is a tensor")
    return out.detach().float().cpu().reshape(out.shape[0], -1)


@torch.no_grad()
def features(net, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
    """{layer: (n, d) features} of ``net`` on ``x`` (eval mode; the net's mode is restored), flattened per example."""
    dev = next(iter(net.parameters())).device
    was = net.training
    net.eval()
    try:
        _, feats = tap_features(net, x.to(dev), layers)
        return {name: _flatten(f, name) for name, f in feats.items()}
    finally:
        net.train(was)


def _centred_gram(f: torch.Tensor) -> np.ndarray:
    a = f.double().numpy()
    a = a - a.mean(0, keepdims=True)
    return a @ a.T


def _cka_table(ft: dict, fs: dict, debiased: bool, grams_t: dict | None = None) -> pd.DataFrame:
    """Long CKA table from feature dicts. Biased linear CKA goes through each layer's centred Gram matrix once
    (<K_c, L_c>_F / (||K_c||_F ||L_c||_F), the same value as ``linear_cka``) instead of once per layer pair;
    ``grams_t`` reuses the teacher's (a frozen teacher's features do not change during training)."""
    with blas_threads():
        return _cka_table_unlimited(ft, fs, debiased, grams_t)


def _cka_table_unlimited(ft: dict, fs: dict, debiased: bool, grams_t: dict | None) -> pd.DataFrame:
    if debiased:
        mat = cka_matrix(ft, fs, debiased=True)
        vals = {(a, b): float(mat.loc[a, b]) for a in mat.index for b in mat.columns}
    else:
        gt = grams_t if grams_t is not None else {k: _centred_gram(v) for k, v in ft.items()}
        gs = {k: _centred_gram(v) for k, v in fs.items()}
        norms = {("t", k): float(np.linalg.norm(g)) for k, g in gt.items()}
        norms.update({("s", k): float(np.linalg.norm(g)) for k, g in gs.items()})
        for (who, k), v in norms.items():
            if v == 0:
                raise LabError(f"{'teacher' if who == 't' else 'student'} layer {k!r} has constant features on "
                               f"these inputs; CKA is undefined; allowed: layers whose features vary")
        vals = {(a, b): float(np.sum(gt[a] * gs[b]) / (norms["t", a] * norms["s", b])) for a in gt for b in gs}
    return pd.DataFrame([{"teacher_layer": a, "student_layer": b, "cka": v} for (a, b), v in vals.items()])


def layer_cka(teacher, student, x: torch.Tensor, teacher_layers=None, student_layers=None,
              debiased: bool = False) -> pd.DataFrame:
    """Linear CKA between each teacher layer and each student layer on the inputs ``x`` (n >= 2; >= 4 debiased).

    Layers default to each net's ``feature_layers``; features are flattened per example. Returns a long
    DataFrame with columns teacher_layer, student_layer, cka: teacher layers in order, each with the student
    layers in order. ``debiased=True`` uses the unbiased HSIC estimator (``lab.probes.cka_matrix``).
    """
    _check_x(x)
    if len(x) < (4 if debiased else 2):
        raise LabError(f"{'debiased' if debiased else 'biased'} CKA needs n >= {4 if debiased else 2} inputs, "
                       f"got n={len(x)}")
    ft = features(teacher, x, _layers(teacher, teacher_layers, "teacher"))
    fs = features(student, x, _layers(student, student_layers, "student"))
    return _cka_table(ft, fs, debiased)


def _check_x(x) -> None:
    if not torch.is_tensor(x) or x.ndim < 2:
        raise LabError(f"x must be a batch tensor (n, ...) of inputs, got {type(x).__name__}"
                       + (f" of shape {tuple(x.shape)}" if torch.is_tensor(x) else ""))


def probe_batch(task, n: int = 256, seed: int = 0) -> torch.Tensor:
    """A fixed subset of ``n`` test inputs of a KD task (all of them if n >= the test size), drawn with ``seed``."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 4:
        raise LabError(f"probe size n must be an integer >= 4, got {n!r}")
    x = task.x_test
    if n >= len(x):
        return x
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return x[idx]


class CKATracker(Callback):
    """Records ``layer_cka(method.teacher, method.student, probe)`` at the start (step 0) and every ``every``
    steps (and at the last step) into ``frames``: a list of DataFrames, each with a ``step`` column."""

    def __init__(self, every: int = 50, n: int = 256, teacher_layers=None, student_layers=None,
                 debiased: bool = False, seed: int = 0):
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise LabError(f"every must be an integer >= 1 (steps between CKA records), got {every!r}")
        self.every, self.n, self.seed, self.debiased = every, n, seed, bool(debiased)
        self.teacher_layers, self.student_layers = teacher_layers, student_layers
        self.frames: list[pd.DataFrame] = []
        self._x = None
        self._teacher_feats = self._teacher_grams = None

    def _record(self, method, step: int) -> None:
        if self.frames and int(self.frames[-1]["step"].iloc[0]) == step:
            return
        if self._teacher_feats is None:  # the teacher is frozen: its features (and Gram matrices) once per run
            self._teacher_feats = features(method.teacher, self._x,
                                           _layers(method.teacher, self.teacher_layers, "teacher"))
            with blas_threads():
                self._teacher_grams = (None if self.debiased else
                                       {k: _centred_gram(v) for k, v in self._teacher_feats.items()})
        fs = features(method.student, self._x, _layers(method.student, self.student_layers, "student"))
        df = _cka_table(self._teacher_feats, fs, self.debiased, self._teacher_grams)
        df.insert(0, "step", step)
        self.frames.append(df)

    def on_start(self, trainable, total: int) -> None:
        if getattr(trainable, "teacher", None) is None:
            raise LabError(f"{getattr(trainable, 'name', 'this method')} has no teacher; CKA tracking compares a "
                           f"teacher with its student (allowed: methods with needs_teacher)")
        self._x = probe_batch(trainable.task, self.n, self.seed)
        self._teacher_feats = self._teacher_grams = None
        if trainable.it == 0:
            self._record(trainable, 0)

    def on_step(self, state: LoopState) -> None:
        if state.it % self.every == 0 or state.it == state.total:
            self._record(state.trainable, state.it)

    def frame(self) -> pd.DataFrame:
        """All records in one long table (step, teacher_layer, student_layer, cka)."""
        if not self.frames:
            raise LabError("no CKA records yet; run the training loop with this callback first")
        return pd.concat(self.frames, ignore_index=True)


def cka_over_training(method, steps: int | None = None, every: int = 50, **tracker_kw) -> list[pd.DataFrame]:
    """Train ``method`` (to ``steps``, default its own total) with a :class:`CKATracker`; returns its frames."""
    tracker = CKATracker(every=every, **tracker_kw)
    for _ in train(method, steps, callbacks=[tracker]):
        pass
    return tracker.frames


def _check_methods(methods) -> dict:
    if not isinstance(methods, Mapping) or not methods:
        raise LabError(f"methods must be a non-empty dict {{run name: trained KD method}}, got "
                       f"{type(methods).__name__}")
    for name, m in methods.items():
        if not getattr(m, "history", None):
            raise LabError(f"run {name!r} has no evaluations yet; allowed: trained KD methods (run lab.train first)")
    return dict(methods)


def compare_runs(methods: Mapping) -> pd.DataFrame:
    """One row per run (index ``run``): method, steps, then best_<metric> and last_<metric> for acc, nll, ece,
    agree (runs without a teacher: NaN) and kl_truth (language task), plus best_it. Best is the evaluation with
    the highest accuracy (lowest kl_truth on the language task), as in ``KDMethod.summary()``."""
    rows = []
    for name, m in _check_methods(methods).items():
        s = m.summary()
        row = {"run": str(name), "method": m.name, "steps": int(m.history[-1]["it"]), "best_it": int(s["best/it"])}
        present = [k for k in METRICS if any(k in r for r in m.history)]
        for which in ("best", "last"):
            for k in METRICS:
                if k in present or k == "agree":
                    row[f"{which}_{k}"] = float(s.get(f"{which}/{k}", float("nan")))
        rows.append(row)
    return pd.DataFrame(rows).set_index("run")


def history_table(methods: Mapping) -> pd.DataFrame:
    """The periodic test evaluations of each run, tidy: run, method, it, then the metrics each run recorded."""
    frames = [pd.DataFrame(m.history).assign(run=str(name), method=m.name)
              for name, m in _check_methods(methods).items()]
    df = pd.concat(frames, ignore_index=True)
    return df[["run", "method", "it"] + [k for k in METRICS if k in df.columns]]


@torch.no_grad()
def reliability_tables(methods: Mapping, n_bins: int = 15, include_teacher: bool = True) -> dict[str, pd.DataFrame]:
    """{run: reliability table of its student on the test split} (``lab.probes.calibration.reliability``), plus
    ``"teacher"`` first (the first run that has one) when ``include_teacher``. On the language task the rows are
    token positions."""
    from lab.metrics.calibration import reliability  # inside: no cycle; calibration is light, could be top-level

    methods = _check_methods(methods)
    out = {}
    first = next(iter(methods.values()))
    task = first.task
    y = task.y_test.reshape(-1)
    if include_teacher:
        with_teacher = [m for m in methods.values() if m.teacher is not None]
        if with_teacher:
            z = with_teacher[0].teacher_test_logits()
            out["teacher"] = reliability(z.reshape(-1, z.shape[-1]), y, n_bins=n_bins)
    for name, m in methods.items():
        if m.task.name != task.name:
            raise LabError(f"run {name!r} is on task {m.task.name!r}, the others on {task.name!r}; "
                           f"allowed: runs of one task")
        z = task.logits(m.student, task.x_test)
        out[str(name)] = reliability(z.reshape(-1, z.shape[-1]), y, n_bins=n_bins)
    return out


# ---------------------------------------------------------------- where the student and the teacher disagree
#: tokens of the language task as text: real tokens a, b, c, ... and BOS as "^" (``token_text``)
BOS_TEXT = "^"
#: context tokens shown before a language-task prediction
CONTEXT = 12


def token_text(ids, vocab: int) -> str:
    """Token ids of the synthetic language (0..vocab-1, BOS = vocab) as letters ("^" for BOS; ``<id>`` beyond z)."""
    return "".join(BOS_TEXT if i == vocab else (chr(97 + i) if i < 26 else f"<{i}>") for i in map(int, ids))


def _task(task):
    from lab.kd.tasks import get_task  # inside: the probes read KD tasks only for these views

    return get_task(task)


@torch.no_grad()
def disagreements(teacher, students: Mapping, task, n: int | None = None, seed: int = 0) -> pd.DataFrame:
    """Where each student and the teacher disagree, one row per test prediction.

    Rows: each test digit (``example`` = its index in the test split), or on the language task each token position
    of each test sequence (``example``, ``position``, and ``context``: the last :data:`CONTEXT` tokens as text, see
    :func:`token_text`). ``n``: a seeded subset of n test examples (None: all). Columns: label (the true class or
    next token), teacher_pred, teacher_conf (top-1 probability), then for each student ``<name>_pred``,
    ``<name>_conf``, ``<name>_kl`` (KL(teacher || student) at temperature 1, nats) and ``<name>_agree`` (same
    top-1 as the teacher). ``df.attrs["n_classes"]`` holds the number of classes."""
    task = _task(task)
    if not isinstance(students, Mapping) or not students:
        raise LabError(f"students must be a non-empty dict {{name: network}}, got {type(students).__name__}")
    x, y = task.x_test, task.y_test
    idx = torch.arange(len(x))
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise LabError(f"n must be None (every test example) or an integer >= 1, got {n!r}")
        if n < len(x):
            idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    x, y = x[idx], y[idx]
    zt = task.logits(teacher, x).double()
    lm = task.kind == "lm"
    rows = {"example": idx.repeat_interleave(zt.shape[1]) if lm else idx}
    if lm:
        L = zt.shape[1]
        rows["position"] = torch.arange(L).repeat(len(idx))
        vocab = task.n_classes - 1
        texts = [token_text(seq, vocab) for seq in x.tolist()]
        if vocab <= 26:  # one character per token: slice each sequence's text
            rows["context"] = [t[max(0, p - CONTEXT + 1):p + 1] for t in texts for p in range(L)]
        else:
            rows["context"] = [token_text(x[i, max(0, p - CONTEXT + 1):p + 1], vocab) for i in range(len(idx))
                               for p in range(L)]
    lt = torch.log_softmax(zt.reshape(-1, zt.shape[-1]), -1)
    pt = lt.exp()
    tpred = lt.argmax(-1)
    rows.update(label=y.reshape(-1), teacher_pred=tpred, teacher_conf=pt.max(-1).values)
    for name, net in students.items():
        ls = torch.log_softmax(task.logits(net, x).double().reshape(-1, zt.shape[-1]), -1)
        spred = ls.argmax(-1)
        rows.update({f"{name}_pred": spred, f"{name}_conf": ls.exp().max(-1).values,
                     f"{name}_kl": (pt * (lt - ls)).sum(-1).clamp_min(0), f"{name}_agree": spred == tpred})
    df = pd.DataFrame({k: (v.numpy() if torch.is_tensor(v) else v) for k, v in rows.items()})
    df.attrs["n_classes"] = int(task.n_classes)
    return df


def _students_of(df: pd.DataFrame) -> list[str]:
    return [c[:-len("_agree")] for c in df.columns if c.endswith("_agree")]


def _check_student(df: pd.DataFrame, student: str) -> None:
    if not isinstance(df, pd.DataFrame) or "teacher_pred" not in df.columns:
        raise LabError("expected the table of disagreements(); allowed: its output")
    if student not in _students_of(df):
        raise LabError(f"unknown student {student!r}; allowed: {', '.join(_students_of(df))}")


def disagreement_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per student (index ``student``): rows, disagree (count), rate, mean_kl (nats), acc, and teacher_acc."""
    if not isinstance(df, pd.DataFrame) or "teacher_pred" not in df.columns:
        raise LabError("expected the table of disagreements(); allowed: its output")
    t_acc = float((df.teacher_pred == df.label).mean())
    out = [{"student": s, "rows": len(df), "disagree": int((~df[f"{s}_agree"]).sum()),
            "rate": float(1 - df[f"{s}_agree"].mean()), "mean_kl": float(df[f"{s}_kl"].mean()),
            "acc": float((df[f"{s}_pred"] == df.label).mean()), "teacher_acc": t_acc} for s in _students_of(df)]
    return pd.DataFrame(out).set_index("student")


def confusion(df: pd.DataFrame, student: str, n_classes: int | None = None) -> pd.DataFrame:
    """Counts of (teacher prediction, student prediction): rows teacher_pred, columns the student's, every class
    0..n_classes-1 (default ``df.attrs["n_classes"]``). The diagonal is where they agree."""
    _check_student(df, student)
    k = int(n_classes or df.attrs.get("n_classes") or int(max(df.teacher_pred.max(), df[f"{student}_pred"].max())) + 1)
    m = np.zeros((k, k), dtype=np.int64)
    np.add.at(m, (df.teacher_pred.to_numpy(), df[f"{student}_pred"].to_numpy()), 1)
    out = pd.DataFrame(m, index=pd.Index(range(k), name="teacher_pred"), columns=pd.Index(range(k), name=student))
    return out


def disagreement_examples(df: pd.DataFrame, task, student: str, k: int = 12) -> dict:
    """The (up to) ``k`` rows where ``student`` and the teacher disagree most (largest KL first), ready to show:
    {"rows": DataFrame (example, label, teacher_pred/conf, student_pred/conf, kl), "images": (k, H, W) array of the
    digits (image tasks), or on the language task the rows also carry text (context, label_text, teacher_text,
    student_text)}."""
    _check_student(df, student)
    task = _task(task)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise LabError(f"k must be an integer >= 1, got {k!r}")
    sub = df[~df[f"{student}_agree"]].sort_values(f"{student}_kl", ascending=False, kind="stable").head(k)
    keep = ["example"] + (["position", "context"] if "position" in df.columns else []) + ["label", "teacher_pred",
                                                                                         "teacher_conf"]
    rows = sub[keep].assign(student_pred=sub[f"{student}_pred"], student_conf=sub[f"{student}_conf"],
                            kl=sub[f"{student}_kl"]).reset_index(drop=True)
    out = {"rows": rows, "student": student}
    if task.kind == "lm":
        vocab = task.n_classes - 1
        for c in ("label", "teacher_pred", "student_pred"):
            rows[c.replace("_pred", "") + "_text"] = [token_text([v], vocab) for v in rows[c]]
    elif task.x_test.ndim == 4:
        imgs = task.x_test[torch.tensor(rows.example.tolist(), dtype=torch.long)]
        out["images"] = imgs[:, 0].float().cpu().numpy()
    return out


__all__ = ["layer_cka", "features", "probe_batch", "CKATracker", "cka_over_training", "compare_runs",
           "history_table", "reliability_tables", "disagreements", "disagreement_summary", "confusion",
           "disagreement_examples", "token_text"]
