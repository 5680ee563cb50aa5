"""What the feature-distillation methods share: intermediate features by layer name, the layer choice, the
frozen teacher's features, and the embedding methods' base.

These methods pull the student's INTERMEDIATE features towards the teacher's, instead of (or besides) its
logits. Features are read with :class:`lab.nets.hooks.FeatureTap` (through :func:`run_with_features`; the
networks are not changed); the teacher's are computed under ``no_grad``. Layers are chosen by name
(``net.feature_layers``); a bad name is refused with a one-line error that lists the allowed ones.

The networks are toy (8x8 digits, 32-d synthetic features); the shipped CNN teacher has layers conv1, conv2
(8x8 maps), pool (2x2 average pool, flattened) -- so "middle" and "penultimate" layers are those names
(:func:`middle_layer`, :func:`penultimate_layer`), not ResNet stages.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lab.config import param
from lab.errors import LabError
from lab.kd.base import KDConfig, KDMethod
from lab.kd.tasks import logits_of
from lab.metrics.similarity import linear_cka
from lab.nets.hooks import layer_names, tap_features

# ----------------------------------------------------------------------------- layers and features


def hidden_layers(net: nn.Module) -> list[str]:
    """The tap-able layers of ``net`` except its logits ``head``."""
    return [n for n in layer_names(net) if n != "head"]


def check_layer(net: nn.Module, name: str, field: str, role: str) -> str:
    """``name`` if it is a hidden layer of ``net``; else a one-line LabError listing the allowed names."""
    allowed = hidden_layers(net)
    if name not in allowed:
        raise LabError(f"invalid {field}={name!r}: not a layer of the {role} {type(net).__name__}; "
                       f"allowed: {', '.join(allowed)}")
    return name


def middle_layer(net: nn.Module) -> str:
    """The middle hidden layer (FitNets' guided/hint layer): MLP[32] -> fc1, CNN[32,64] -> conv2,
    TinyViT depth 2 -> block1."""
    hl = hidden_layers(net)
    return hl[(len(hl) - 1) // 2]


def penultimate_layer(net: nn.Module) -> str:
    """The layer feeding the head: MLP -> last fcK, CNN -> pool, TinyViT -> norm."""
    return hidden_layers(net)[-1]


def run_with_features(net: nn.Module, x: torch.Tensor, layers, grad: bool = True):
    """(logits, {layer: feature}) of one forward pass (:func:`lab.nets.hooks.tap_features`; no layers: just the
    logits); ``grad=False`` runs under no_grad (teachers)."""
    with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
        out, feats = tap_features(net, x, layers, detach=not grad) if layers else (net(x), {})
        return logits_of(out), feats


def embedding(f: torch.Tensor) -> torch.Tensor:
    """A feature as one vector per example: (n, d) as is, conv maps averaged over space, tokens over tokens."""
    if f.ndim == 2:
        return f
    if f.ndim == 4:
        return f.mean(dim=(2, 3))
    if f.ndim == 3:
        return f.mean(dim=1)
    raise LabError(f"cannot make an embedding from a feature of shape {tuple(f.shape)}; allowed: 2-, 3- or 4-d")


def feature_cka(student: nn.Module, teacher: nn.Module, x: torch.Tensor, student_layer: str, teacher_layer: str,
                debiased: bool = False) -> float:
    """Linear CKA (``lab.metrics.similarity.linear_cka``) between a student layer and a teacher layer on inputs ``x``
    (features flattened per example; both nets in eval mode, no gradients)."""
    check_layer(student, student_layer, "student_layer", "student")
    check_layer(teacher, teacher_layer, "teacher_layer", "teacher")
    was = student.training, teacher.training
    student.eval(), teacher.eval()
    try:
        dev_s, dev_t = next(student.parameters()).device, next(teacher.parameters()).device
        _, fs = run_with_features(student, x.to(dev_s), [student_layer], grad=False)
        _, ft = run_with_features(teacher, x.to(dev_t), [teacher_layer], grad=False)
    finally:
        student.train(was[0]), teacher.train(was[1])
    fs, ft = fs[student_layer], ft[teacher_layer]
    return linear_cka(fs.reshape(len(fs), -1).double().cpu().numpy(), ft.reshape(len(ft), -1).double().cpu().numpy(),
                      debiased=debiased)


# ----------------------------------------------------------------------------- the methods' bases


@dataclass
class LayerPairConfig(KDConfig):
    """A method distilling one student layer into one teacher layer (fitnets, vkd, rkd)."""

    #: the student layer ("": the method's default, see :meth:`FeatureKD.layer_pair`)
    student_layer: str = param("", allowed="a layer name or ''")
    #: the teacher layer ("": the method's default)
    teacher_layer: str = param("", allowed="a layer name or ''")


class FeatureKD(KDMethod):
    """Base of the feature methods: one forward pass gives the logits and the features of the named layers."""

    kinds = ("classify",)

    def layer_pair(self, default) -> tuple[str, str]:
        """(student layer, teacher layer): the config's ``student_layer``/``teacher_layer``, ``default(net)`` for
        ''; a name that is not a hidden layer is refused listing the allowed ones."""
        c = self.config
        return (check_layer(self.student, c.student_layer or default(self.student), "student_layer", "student"),
                check_layer(self.teacher, c.teacher_layer or default(self.teacher), "teacher_layer", "teacher"))

    def feature_shapes(self, student_layers, teacher_layers) -> tuple[dict, dict]:
        """({layer: feature shape without the batch dim}) of the student's and the teacher's layers on two training
        inputs (to size regressors, projectors, branches)."""
        x = self.task.x_train[:2].to(self.device)
        shapes = []
        for net, layers in ((self.student, student_layers), (self.teacher, teacher_layers)):
            feats = run_with_features(net, x, layers, grad=False)[1] if layers else {}
            shapes.append({k: tuple(v.shape[1:]) for k, v in feats.items()})
        return shapes[0], shapes[1]

    def teacher_features(self, batch: dict, layers):
        """The frozen teacher's (logits, {layer: feature}) on a batch, without gradients. Without augmentation
        the teacher sees only the ``n_train`` training examples, so they are computed once and indexed by
        ``batch["idx"]`` (the teacher is in eval mode and deterministic: same numbers, less compute)."""
        layers = list(dict.fromkeys(layers))
        if self.config.augment != "none" or "idx" not in batch:
            return run_with_features(self.teacher, batch["x"], layers, grad=False)
        cache = self.__dict__.setdefault("_teacher_cache", {})
        key = tuple(layers)
        if key not in cache:
            x = self.task.x_train[:self.n_train]
            parts = [run_with_features(self.teacher, x[i:i + 1024].to(self.device), layers, grad=False)
                     for i in range(0, len(x), 1024)]
            cache[key] = (torch.cat([p[0] for p in parts]), {n: torch.cat([p[1][n] for p in parts]) for n in layers})
        logits, feats = cache[key]
        idx = batch["idx"].to(logits.device)
        return logits[idx], {n: f[idx] for n, f in feats.items()}

    def forward_features(self, batch: dict, student_layers, teacher_layers):
        """(student logits, student features, teacher logits, teacher features) of a batch: the student's with
        gradients, the teacher's without."""
        teacher_logits, ft = self.teacher_features(batch, teacher_layers)
        student_logits, fs = run_with_features(self.student, batch["x"], student_layers)
        return student_logits, fs, teacher_logits, ft


class EmbedMethod(FeatureKD):
    """Base of the embedding methods (vkd, rkd): one student layer and one teacher layer (default: the penultimate
    ones, :func:`penultimate_layer`), each made one vector per example (:func:`embedding`)."""

    kinds_note = "embeddings of the classifiers; use minilm for the language task"

    def setup(self):
        self.s_layer, self.t_layer = self.layer_pair(penultimate_layer)

    def embeddings(self, batch):
        """(student logits, teacher logits, student embedding, teacher embedding) of a batch."""
        student_logits, fs, teacher_logits, ft = self.forward_features(batch, [self.s_layer], [self.t_layer])
        return student_logits, teacher_logits, embedding(fs[self.s_layer]), embedding(ft[self.t_layer])


__all__ = ["hidden_layers", "check_layer", "middle_layer", "penultimate_layer", "run_with_features", "embedding",
           "feature_cka", "LayerPairConfig", "FeatureKD", "EmbedMethod"]
