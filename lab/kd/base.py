"""The knowledge-distillation method interface and its registry.

A KD method trains a student classifier (or language model) from a frozen teacher network on a
:class:`~lab.kd.tasks.KDTask`. It is a :class:`~lab.trainable.Trainable`, so the same loop,
callbacks, run folders and resume serve it as the step-distillation methods:

    m = lab.kd.get("kd")("kd/digits/teacher", "digits", {"steps": 600}, seed=0)
    for state in lab.distill(m):
        ...
    m.evaluate()            # test acc / nll / ece / agreement (and kl_truth on the language task)
    m.history               # the periodic evaluations (best and last epoch both come from here)

Subclasses set ``Config`` (a :class:`KDConfig` subclass whose fields are declared with
:func:`lab.config.param`), ``paper``, ``mechanism`` and implement
``loss(student_logits, teacher_logits, y, batch, it) -> (loss, terms)``, or override ``compute(batch, it)`` when
they need features. ``targets(batch)`` says what distribution the student is pulled to, without
training. Extra trainable modules (regressors, projectors, peers) are added with ``add_trainable(name,
net, lr)``; ``optimize(loss)`` steps every optimiser. The methods live in family packages: ``logit/``,
``feature/`` and ``online/`` (each with a README).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lab.config import Config, param
from lab.errors import LabError
from lab.kd.tasks import KDTask, get_task, logits_of
from lab.kd.zoo import KDModel
from lab.losses import forward_kl
from lab.nets.classifiers import CLASSIFIERS, build_classifier
from lab.nets.specs import check_net_spec
from lab.trainable import StepOutput, Trainable, make_registry, resolve_reference

#: the knowledge-distillation methods by name: ``register("name")`` decorates a KDMethod subclass
KD_REGISTRY, register, list_methods, get = make_registry("KD method")


@dataclass
class KDTargets:
    """What a KD method pulls the student towards on a batch, in probability space (rows sum to 1).

    ``target`` is the distribution the loss moves the student's ``student`` distribution to;
    ``teacher`` is the teacher's own (tempered) distribution. Shapes (n, classes) (language: (n*L, vocab)).
    """

    target: torch.Tensor
    teacher: torch.Tensor
    student: torch.Tensor
    labels: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)


AUGMENTATIONS = ("none", "shift")

#: the benchmark setting where Hinton KD beats training from scratch (scarce labels): 200 labelled digits, 1000 steps
SCARCE_LABELS = {"steps": 1000, "n_train": 200}


def shift_images(x: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Translate each image (n, C, H, W) by (dx, dy) in {-1, 0, 1} pixels, filling with the background (-1)."""
    pad = F.pad(x, (1, 1, 1, 1), value=-1.0)
    H, W = x.shape[-2:]
    rows = (torch.arange(H, device=x.device)[None, :] + 1 - dy[:, None]).clamp(0, H + 1)
    cols = (torch.arange(W, device=x.device)[None, :] + 1 - dx[:, None]).clamp(0, W + 1)
    n = torch.arange(x.shape[0], device=x.device)[:, None, None]
    return pad.permute(0, 2, 3, 1)[n, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def _student_spec(spec: dict, name: str) -> dict:
    return check_net_spec(spec, name, CLASSIFIERS, None, complete=True)


@dataclass
class KDConfig(Config):
    steps: int = param(1000, ge=1)
    batch: int = param(64, ge=2)
    lr: float = param(1e-3, gt=0)
    weight_decay: float = param(0.0, ge=0)
    #: the student network spec (None: the task's default student)
    student: dict | None = param(None, spec=_student_spec, note="a network spec with a 'type'")
    #: softmax temperature of the distillation term
    temperature: float = param(4.0, gt=0)
    #: weight of the cross-entropy with the true labels
    ce_weight: float = param(0.1, ge=0)
    #: weight of the distillation term
    kd_weight: float = param(0.9, ge=0)
    #: evaluate on the test split every this many steps (0: ten times per run)
    eval_every: int = param(0, ge=0, note="0: ten evaluations per run")
    #: use only the first n_train training examples (0: all), to study KD with scarce labels
    n_train: int = param(0, ge=0, note="0: the whole training split")
    #: data augmentation of image batches: "none" or "shift" (random translations by up to one pixel)
    augment: str = param("none", choices=AUGMENTATIONS)


class KDMethod(Trainable):
    """Base class of knowledge-distillation methods (see the module docstring)."""

    Config = KDConfig
    family = "knowledge distillation"
    mechanism = ""
    paper = ""
    #: task kinds the method supports ("classify", "lm")
    kinds: tuple = ("classify", "lm")
    #: why a kind is not supported (shown in the error)
    kinds_note: str = ""
    #: False for methods that train without a teacher (scratch, dml)
    needs_teacher: bool = True
    #: config overrides for a tiny run (contract tests)
    tiny: dict = {"steps": 8, "batch": 32}
    tiny_task: str = "digits"
    #: the task and config overrides of the benchmark (bench/kd.py) and the method's claim
    bench_task: str = "digits"
    bench_config: dict = {}
    #: other methods the benchmark also runs at the same shared config (label -> (method, config overrides)):
    #: the comparison the method's paper makes, besides scratch
    bench_references: dict = {}

    def __init__(self, teacher: "nn.Module | str | None", task: "KDTask | str", config: "KDConfig | dict | None" = None,
                 seed: int = 0, device=None):
        super().__init__(seed, device)
        self.use_config(config)
        config = self.config
        self.task = get_task(task)
        if self.task.kind not in self.kinds:
            raise LabError(f"{self.name} supports {' and '.join(self.kinds)} tasks, not {self.task.kind} "
                           f"({self.task.name})" + (f": {self.kinds_note}" if self.kinds_note else "")
                           + f"; methods for {self.task.kind}: "
                           + ", ".join(m for m in list_methods() if self.task.kind in KD_REGISTRY[m].kinds))
        self.teacher_ref = teacher if isinstance(teacher, str) else None
        if isinstance(teacher, str):  # a reference: resolved by lab.zoo.resolve (installed hook, no upward import)
            teacher = resolve_reference(teacher, "kd", self.device).model
        if teacher is None and self.needs_teacher:
            raise LabError(f"{self.name} needs a teacher network (a kd zoo entry such as kd/{self.task.name}/teacher)")
        self.teacher: nn.Module | None = None
        if teacher is not None:
            self.teacher = teacher.to(self.device).eval()
            for p in self.teacher.parameters():
                p.requires_grad_(False)
        n = len(self.task.x_train)
        self.n_train = min(config.n_train, n) if config.n_train else n
        torch.manual_seed(self.seed)
        self.student = self.add_net("student", self.new_student(), lr=None)
        self.add_optimizer("student", self.student)
        #: periodic test evaluations: dicts with "it" and the metrics of :meth:`evaluate`
        self.history: list[dict] = []
        self._teacher_test_logits = None
        self.setup()

    # ---- construction helpers
    def student_spec(self) -> dict:
        return dict(self.config.student or self.task.student_net)

    def new_student(self, spec: dict | None = None) -> nn.Module:
        return build_classifier(spec or self.student_spec())

    def add_optimizer(self, name: str, net: nn.Module, lr: float | None = None) -> None:
        """An AdamW optimiser (the config's lr and weight decay) over ``net``'s parameters, checkpointed as ``name``."""
        params = [p for p in net.parameters() if p.requires_grad]
        self.optimizers[name] = torch.optim.AdamW(params, lr=lr or self.config.lr, weight_decay=self.config.weight_decay)

    def add_trainable(self, name: str, net: nn.Module, lr: float | None = None) -> nn.Module:
        """Add an extra trained module (regressor, projector, peer) with its own optimiser."""
        net = self.add_net(name, net)
        self.add_optimizer(name, net, lr)
        return net

    def setup(self) -> None: ...

    # ---- batches
    def sample_batch(self, it: int) -> dict:
        idx = self.randint(0, self.n_train, (min(self.config.batch, self.n_train),)).cpu()
        x = self.task.x_train[idx].to(self.device)
        if self.config.augment == "shift" and x.ndim == 4:
            x = shift_images(x, self.randint(-1, 2, (len(x),)), self.randint(-1, 2, (len(x),)))
        return {"x": x, "y": self.task.y_train[idx].to(self.device), "idx": idx}

    # ---- losses
    def teacher_logits(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return logits_of(self.teacher(x))

    def ce(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    def plus_ce(self, loss: torch.Tensor, terms: dict, student_logits: torch.Tensor, y: torch.Tensor):
        """``loss + ce_weight * CE(student_logits, y)`` (term "ce") when the config's ce_weight is positive; else
        unchanged."""
        if self.config.ce_weight > 0:
            terms["ce"] = self.ce(student_logits, y)
            loss = loss + self.config.ce_weight * terms["ce"]
        return loss, terms

    def plus_kd(self, loss: torch.Tensor, terms: dict, student_logits: torch.Tensor, teacher_logits: torch.Tensor):
        """``loss + kd_weight * T^2 KL(teacher || student)`` (term "kd") when the config's kd_weight is positive;
        else unchanged (the optional Hinton head of the feature methods)."""
        if self.config.kd_weight > 0:
            terms["kd"] = forward_kl(flat(student_logits), flat(teacher_logits), temperature=self.config.temperature)
            loss = loss + self.config.kd_weight * terms["kd"]
        return loss, terms

    def detached_logits(self, x: torch.Tensor):
        """(student, teacher) logits of ``x`` as (rows, classes), without gradients (the teacher's None without a
        teacher): what :meth:`targets` compares."""
        with torch.no_grad():
            student_logits = flat(logits_of(self.student(x)))
            teacher_logits = flat(self.teacher_logits(x)) if self.teacher is not None else None
        return student_logits, teacher_logits

    def loss(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor | None, y: torch.Tensor, batch: dict,
             it: int):
        """The training loss from ``student_logits`` and ``teacher_logits`` (both (n, C) or (n, L, V); the teacher's
        are None when the method does not need a teacher); returns ``(loss, {term: float})``."""
        raise NotImplementedError

    def compute(self, batch: dict, it: int):
        """Forward pass and loss for one batch; returns ``(loss, terms)``. Override when features are needed."""
        x, y = batch["x"], batch["y"]
        teacher_logits = self.teacher_logits(x) if (self.teacher is not None and self.needs_teacher) else None
        student_logits = logits_of(self.student(x))
        return self.loss(student_logits, teacher_logits, y, batch, it)

    def optimize(self, loss: torch.Tensor) -> None:
        for o in self.optimizers.values():
            o.zero_grad(set_to_none=True)
        self.backward(loss)  # scaled under fp16; under torchrun DDP averages the gradients across ranks here
        for o in self.optimizers.values():
            self.optimizer_step(o)

    def after_step(self, batch: dict, it: int, loss: float, terms: dict) -> dict:
        """Hook after the optimiser step (adaptive schedules); returns extra metrics."""
        return {}

    def step(self, batch: dict, it: int) -> StepOutput:
        for net in self.networks.values():
            net.train()
        loss, terms = self.compute(batch, it)
        if not torch.isfinite(loss):
            raise LabError(f"{self.name}: the loss became {float(loss)} at step {it}")
        self.optimize(loss)
        metrics = dict(self.after_step(batch, it, float(loss.detach()), terms) or {})
        if (it + 1) % self.eval_interval() == 0 or it + 1 == self.total_steps:
            ev = self.evaluate()
            self.history.append({"it": it + 1, **ev})
            metrics.update({f"test/{k}": v for k, v in ev.items()})
        return StepOutput(losses={"total": float(loss.detach()), **{k: _num(v) for k, v in terms.items()}},
                          metrics=metrics)

    def eval_interval(self) -> int:
        return self.config.eval_every or max(1, self.total_steps // 10)

    # ---- what the student is pulled to
    def targets(self, batch: dict) -> KDTargets:
        """Default: the teacher's tempered softmax (Hinton). Methods with another target override this."""
        temperature = self.config.temperature
        student_logits, teacher_logits = self.detached_logits(batch["x"])
        tp = torch.softmax(teacher_logits / temperature, -1) if teacher_logits is not None \
            else F.one_hot(batch["y"].reshape(-1), student_logits.shape[-1]).float()
        student = torch.softmax(student_logits / temperature, -1)
        return KDTargets(target=tp, teacher=tp, student=student, labels=batch["y"].reshape(-1),
                         info={"temperature": temperature})

    # ---- evaluation
    def teacher_test_logits(self) -> torch.Tensor | None:
        if self.teacher is None:
            return None
        if self._teacher_test_logits is None:
            self._teacher_test_logits = self.task.logits(self.teacher, self.task.x_test)
        return self._teacher_test_logits

    def evaluate(self, split: str = "test") -> dict:
        tl = self.teacher_test_logits() if split == "test" else None
        return self.task.evaluate(self.student, split, teacher_logits=tl)

    def summary(self, metric: str | None = None) -> dict:
        """Best and last test metrics from the periodic evaluations (best: highest acc, or lowest kl_truth on the
        language task)."""
        if not self.history:
            raise LabError(f"{self.name} has no evaluations yet; train it first")
        metric = metric or ("kl_truth" if self.task.kind == "lm" else "acc")
        lower = metric in ("kl_truth", "nll", "ece")
        best = (min if lower else max)(self.history, key=lambda r: r[metric])
        last = self.history[-1]
        return {**{f"best/{k}": v for k, v in best.items()}, **{f"last/{k}": v for k, v in last.items()}}

    # ---- persistence
    def extra_state(self) -> dict:
        return {"history": [dict(r) for r in self.history]}

    def load_extra_state(self, sd: dict) -> None:
        self.history = [dict(r) for r in sd.get("history", [])]

    def config_dict(self) -> dict:
        return asdict(self.config)

    def model(self):
        """The trained student as a saveable :class:`lab.kd.zoo.KDModel`."""
        card = {"method": self.name, "task": self.task.name, "history": [dict(r) for r in self.history]}
        if self.history:
            card["summary"] = self.summary()
        return KDModel(self.student, card=card)

    #: run folders save ``trainable.generator()``; for KD that is the student classifier
    generator = model

    @classmethod
    def describe(cls) -> dict:
        return {"name": cls.name, "family": cls.family, "mechanism": cls.mechanism, "paper": cls.paper,
                "kinds": list(cls.kinds)}


def _num(v) -> float:
    return float(v.detach()) if isinstance(v, torch.Tensor) else float(v)


def kl_rows(p_log: torch.Tensor, q_log: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per row from log-probabilities (n, C) -> (n,)."""
    return (p_log.exp() * (p_log - q_log)).sum(-1)


def flat(z: torch.Tensor) -> torch.Tensor:
    """(n, C) or (n, L, V) logits -> (rows, classes)."""
    return z.reshape(-1, z.shape[-1])


__all__ = ["KD_REGISTRY", "KDConfig", "KDMethod", "KDTargets", "register", "get", "list_methods", "flat", "kl_rows",
           "SCARCE_LABELS", "AUGMENTATIONS", "shift_images"]
