"""Knowledge-distillation tasks: the data, the default teacher and student networks, and the evaluation.

A task is what a KD method is run on. Every task is deterministic (its data is drawn from fixed
seeds on the CPU) and small enough for a laptop:

- ``digits``: scikit-learn's 8x8 digits (1,437 train / 360 test), a CNN teacher, a small MLP student.
- ``hard``: :func:`lab.data.classification.hard_classification`, a task with a capacity gap
  (a wide MLP teacher, a narrow MLP student).
- ``moons``, ``spirals``, ... (labelled toy2d sources): 2D points, MLP teacher and student.
- ``language``: a synthetic hidden-Markov language with exact next-token conditionals
  (:class:`lab.data.language.SyntheticLanguage`), a tiny causal transformer teacher and a much
  smaller one as the student. ``x`` is the token prefix (with BOS), ``y`` the next tokens.

``evaluate(net)`` gives test accuracy, NLL and ECE for classifiers, plus ``kl_truth`` (mean
KL(p_true || p_model) per position) for the language task.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import torch
import torch.nn.functional as F

from lab.errors import LabError
from lab.metrics.calibration import agreement, ece


@dataclass
class KDTask:
    name: str
    kind: str  # "classify" or "lm"
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    teacher_net: dict
    student_net: dict
    #: scratch-training recipe of the task's teacher (a ``lab.kd`` "scratch" config)
    teacher_recipe: dict
    language: object = None
    info: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])

    def __repr__(self) -> str:
        return (f"KDTask({self.name!r}, kind={self.kind}, train={len(self.x_train)}, test={len(self.x_test)}, "
                f"classes={self.n_classes})")

    # ---- evaluation
    @torch.no_grad()
    def logits(self, net, x: torch.Tensor, batch: int = 1024) -> torch.Tensor:
        """Logits of ``net`` on ``x`` (in eval mode, in chunks), on the CPU."""
        dev = next(iter(net.parameters())).device
        was = net.training
        net.eval()
        try:
            out = torch.cat([logits_of(net(x[i:i + batch].to(dev))).cpu() for i in range(0, len(x), batch)])
        finally:
            net.train(was)
        return out

    @torch.no_grad()
    def evaluate(self, net, split: str = "test", teacher_logits: torch.Tensor | None = None) -> dict:
        """Metrics of ``net`` on a split: acc, nll, ece (and kl_truth for the language task; agreement with
        the teacher when ``teacher_logits`` for the same split are given)."""
        if split not in ("train", "test"):
            raise LabError(f"unknown split {split!r}; allowed: train, test")
        x, y = (self.x_test, self.y_test) if split == "test" else (self.x_train, self.y_train)
        z = self.logits(net, x)
        zf, yf = z.reshape(-1, z.shape[-1]), y.reshape(-1)
        out = {"acc": float((zf.argmax(-1) == yf).float().mean()),
               "nll": float(F.cross_entropy(zf.double(), yf)),
               "ece": float(ece(zf, yf))}
        if self.kind == "lm":
            full = torch.cat([x, y[:, -1:]], 1)
            out["kl_truth"] = float(self.language.kl_to_truth(z, full))
        if teacher_logits is not None:
            out["agree"] = float(agreement(zf, teacher_logits.reshape(-1, teacher_logits.shape[-1])))
        return out


def logits_of(out):
    """Networks with ``return_attention`` return tuples; plain calls return logits."""
    return out[0] if isinstance(out, tuple) else out


def _digits():
    from lab.data.classification import digits_classification  # lazy: each task loads only its own data

    xtr, ytr = digits_classification("train")
    xte, yte = digits_classification("test")
    return KDTask("digits", "classify", xtr, ytr, xte, yte, 10,
                  teacher_net={"type": "clf_cnn", "in_channels": 1, "size": 8, "channels": [32, 64], "n_classes": 10},
                  student_net={"type": "clf_mlp", "in_dim": 64, "hidden": [32], "n_classes": 10},
                  teacher_recipe={"steps": 2000, "batch": 128, "lr": 2e-3, "weight_decay": 1e-4, "augment": "shift"},
                  info={"source": "scikit-learn digits, fixed 80/20 split"})


def _hard():
    from lab.data.classification import hard_classification  # lazy: each task loads only its own data

    xtr, ytr = hard_classification(n=4000, d=32, n_classes=10, seed=0, split="train")
    xte, yte = hard_classification(n=2000, d=32, n_classes=10, seed=0, split="test")
    return KDTask("hard", "classify", xtr, ytr, xte, yte, 10,
                  teacher_net={"type": "clf_mlp", "in_dim": 32, "hidden": [256, 256], "n_classes": 10},
                  student_net={"type": "clf_mlp", "in_dim": 32, "hidden": [16], "n_classes": 10},
                  teacher_recipe={"steps": 500, "batch": 128, "lr": 1e-3, "weight_decay": 1e-4},
                  info={"source": "hard_classification(d=32, classes=10, seed=0)"})


def _toy(name: str):
    from lab.data.classification import toy2d_classification  # lazy: each task loads only its own data

    xtr, ytr = toy2d_classification(name, n=2000, seed=1)
    xte, yte = toy2d_classification(name, n=1000, seed=2)
    k = int(max(ytr.max(), yte.max())) + 1
    return KDTask(name, "classify", xtr, ytr, xte, yte, k,
                  teacher_net={"type": "clf_mlp", "in_dim": 2, "hidden": [128, 128], "n_classes": k},
                  student_net={"type": "clf_mlp", "in_dim": 2, "hidden": [8], "n_classes": k},
                  teacher_recipe={"steps": 1500, "batch": 128, "lr": 2e-3, "weight_decay": 0.0},
                  info={"source": f"toy2d {name} with labels"})


def _language():
    from lab.data.language import SyntheticLanguage  # lazy: each task loads only its own data

    lang = SyntheticLanguage(vocab=16, n_states=8, seq_len=32, seed=0)
    tr, te = lang.sample(16384, seed=1), lang.sample(256, seed=2)
    V = lang.model_vocab
    return KDTask("language", "lm", tr[:, :-1], tr[:, 1:], te[:, :-1], te[:, 1:], V,
                  teacher_net={"type": "tiny_lm", "vocab": V, "dim": 64, "depth": 2, "heads": 2, "seq_len": 31},
                  student_net={"type": "tiny_lm", "vocab": V, "dim": 8, "depth": 1, "heads": 2, "seq_len": 31},
                  teacher_recipe={"steps": 1500, "batch": 64, "lr": 2e-3, "weight_decay": 0.0},
                  language=lang, info={"source": repr(lang)})


TASK_BUILDERS = {"digits": _digits, "hard": _hard, "language": _language}


def list_tasks() -> list[str]:
    from lab.data import toy2d  # lazy: toy2d datasets only needed to list tasks

    toys = [k for k, s in toy2d.DATASETS.items() if s.n_classes >= 2]
    return list(TASK_BUILDERS) + toys


@lru_cache(maxsize=None)
def _build(name: str) -> KDTask:
    if name in TASK_BUILDERS:
        return TASK_BUILDERS[name]()
    return _toy(name)


def get_task(task: "str | KDTask") -> KDTask:
    """A task by name (see :func:`list_tasks`); a :class:`KDTask` is returned as is."""
    if isinstance(task, KDTask):
        return task
    if task not in list_tasks():
        raise LabError(f"unknown KD task {task!r}; allowed: {', '.join(list_tasks())}")
    return _build(task)


__all__ = ["KDTask", "get_task", "list_tasks", "logits_of"]
