"""The dataset-distillation interface, the toy ConvNet, the augmentation and the evaluation protocol.

A dataset-distillation method learns a small synthetic training set S (``ipc`` images per class, labels fixed,
stored class by class) such that a fresh network trained only on S does well on the real test set. A method is
a :class:`~lab.trainable.Trainable` whose one "step" is one outer iteration of its paper's algorithm, so
``lab.distill(method)``, the loop's callbacks, run folders and resume all serve it; the synthetic images live in
a checkpointed module (``networks["synset"]``).

    m = lab.dd.get("dm")({"ipc": 10, "steps": 200}, seed=0)
    for state in lab.distill(m):
        ...
    m.evaluate()                     # test accuracy of fresh ConvNets trained on m.images() only

Data: scikit-learn's 8x8 digits, the train/test split of the ``digits`` KD task (1,437 / 360 images, pixels in
[-1, 1]); see :func:`digits_data`.

The evaluation protocol (DC/DM's ``evaluate_synset``, Zhao et al. 2021, github.com/VICO-UoE/DatasetCondensation
``utils.py``): a fresh :class:`ConvNet` trained on the synthetic set only with SGD (momentum 0.9, weight decay
5e-4, batch 256), the learning rate x0.1 halfway, test accuracy at the end. It is counted in optimiser steps
(``eval_steps``), so a synthetic set (one batch) and the full training data (about 5.6 batches per epoch) get
the same number of updates. Baselines: :func:`random_real` (the same number of random real images per class)
and the full training data (:func:`evaluate_set` on :func:`digits_data`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from lab.config import Config, check, param
from lab.errors import LabError
from lab.io import atomic_write_json, load_tensors, read_json, save_tensors
from lab.trainable import StepOutput, Trainable, make_registry

#: the dataset-distillation methods by name: ``register("name")`` decorates a DDMethod subclass
DD_REGISTRY, register, list_methods, get = make_registry("dataset distillation method")

N_CLASSES = 10
#: ConvNet blocks at 8x8 (see the ConvNet docstring)
DEPTH = 2
IMAGE_SHAPE = (1, 8, 8)


# ---------------------------------------------------------------- data
@lru_cache(maxsize=1)
def _digits():
    from lab.data.classification import digits_classification  # lazy: the data only when a method is built

    xtr, ytr = digits_classification("train")
    xte, yte = digits_classification("test")
    return xtr.float(), ytr.long(), xte.float(), yte.long()


def digits_data(device="cpu"):
    """``(x_train, y_train, x_test, y_test)`` of the 8x8 digits (the ``digits`` KD task's split), on ``device``."""
    return tuple(t.to(device) for t in _digits())


def class_indices(y: torch.Tensor) -> list[torch.Tensor]:
    """The indices of each class's examples in ``y``."""
    return [torch.nonzero(y == c).flatten() for c in range(N_CLASSES)]


def labels_for(ipc: int, device="cpu") -> torch.Tensor:
    """The fixed labels of a synthetic set, class by class: ``[0]*ipc + [1]*ipc + ...``."""
    return torch.arange(N_CLASSES, device=device).repeat_interleave(int(ipc))


def random_real(ipc: int, seed: int, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``ipc`` random real training images per class (the baseline of every DD paper), class by class."""
    xtr, ytr, _, _ = _digits()
    g = torch.Generator().manual_seed(int(seed))
    out = []
    for idx in class_indices(ytr):
        out.append(xtr[idx[torch.randperm(len(idx), generator=g)[:ipc]]])
    return torch.cat(out).to(device), labels_for(ipc, device)


# ---------------------------------------------------------------- the network
class ConvNet(nn.Module):
    """The DD ConvNet at 8x8: ``depth`` x [conv3x3 (padding 1) -> instance norm (GroupNorm with one group per
    channel, affine) -> ReLU -> avgpool 2] -> linear (the official ConvNet of DC/DM/MTT/FTD, with padding 1).

    Two blocks by default (8 -> 4 -> 2, a 2x2xwidth embedding), not the official three: measured here, a third
    block instance-normalises 2x2 maps, after which the 1x1 features are nearly the same for every image (std
    0.07 across images at init), and a fresh net at the protocol's lr 0.01 is still on its initial plateau after
    300 steps on the full data (test loss 2.1, accuracy 82%); with two blocks it reaches 96% (loss 0.23)."""

    def __init__(self, width: int = 32, depth: int = DEPTH, channels: int = 1, n_classes: int = N_CLASSES,
                 size: int = 8):
        super().__init__()
        self.width, self.depth, self.channels, self.n_classes, self.size = width, depth, channels, n_classes, size
        layers, c = [], channels
        for _ in range(depth):
            layers += [nn.Conv2d(c, width, 3, padding=1), nn.GroupNorm(width, width, affine=True), nn.ReLU(),
                       nn.AvgPool2d(2)]
            c, size = width, size // 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width * size * size, n_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))

    def spec(self) -> dict:
        return {"type": "dd_convnet", "width": self.width, "depth": self.depth, "channels": self.channels,
                "n_classes": self.n_classes, "size": self.size}


def new_net(width: int, seed: int, device="cpu") -> ConvNet:
    """A freshly initialised ConvNet, its initialisation drawn from ``seed`` (the global torch RNG is untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        net = ConvNet(width)
    return net.to(device)


def flat_params(net: nn.Module) -> torch.Tensor:
    """All parameters of ``net`` as one flat vector (detached), in ``named_parameters`` order."""
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()])


def unflatten(net: nn.Module, vec: torch.Tensor) -> dict[str, torch.Tensor]:
    """A flat parameter vector as the name -> tensor dict ``torch.func.functional_call`` takes."""
    out, i = {}, 0
    for name, p in net.named_parameters():
        out[name] = vec[i:i + p.numel()].view_as(p)
        i += p.numel()
    if i != vec.numel():
        raise LabError(f"a flat parameter vector of {vec.numel()} values does not fit a net of {i} parameters")
    return out


def forward_flat(net: nn.Module, vec: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The logits of ``net`` with its parameters replaced by the flat vector ``vec`` (differentiable in both)."""
    return functional_call(net, unflatten(net, vec), (x,))


# ---------------------------------------------------------------- augmentation
AUGMENTS = ("dsa", "none")


def draw_affine(gen: torch.Generator, n: int = 1, strength: float = 1.0) -> torch.Tensor:
    """``n`` random 2x3 affine matrices of differentiable Siamese augmentation on 8x8 digits (DSA, Zhao & Bilen,
    ICML 2021): scale in [1/1.2, 1.2], rotation within +-15 degrees, translation within +-0.125 of the side
    (one pixel). No flip (digits)."""
    u = torch.rand(n, 4, generator=gen) * 2 - 1
    s = 1.2 ** (u[:, 0] * strength)
    a = u[:, 1] * math.radians(15) * strength
    t = u[:, 2:] * 0.25 * strength  # grid units: the side is 2
    cos, sin = torch.cos(a) / s, torch.sin(a) / s
    return torch.stack([torch.stack([cos, -sin, t[:, 0]], 1), torch.stack([sin, cos, t[:, 1]], 1)], 1)


def apply_affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Warp images (n, C, H, W) in [-1, 1] with one affine (1, 2, 3) or one per image (n, 2, 3); the background
    (-1) fills what comes in from outside. Differentiable in ``x``."""
    theta = theta.to(x.device, x.dtype).expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x + 1.0, grid, align_corners=False, padding_mode="zeros") - 1.0


def augment(x: torch.Tensor, gen: torch.Generator, mode: str = "dsa", siamese: bool = True) -> torch.Tensor:
    """DSA on ``x``: one transform for the whole batch when ``siamese`` (the same draw is then reused for the
    real and the synthetic batch of a class by passing generators in the same state), else one per image."""
    if mode == "none":
        return x
    return apply_affine(x, draw_affine(gen, 1 if siamese else len(x)))


# ---------------------------------------------------------------- evaluation protocol
@dataclass
class EvalProtocol:
    """How a synthetic set is judged (DC/DM ``evaluate_synset``): SGD momentum 0.9, weight decay 5e-4, batch
    256, ``steps`` updates with the lr x0.1 after half of them (momentum reset, as the official code re-creates
    the optimiser), augmentation of the training batches, ConvNet of ``width``."""

    steps: int = 300
    lr: float = 0.01
    batch: int = 256
    momentum: float = 0.9
    weight_decay: float = 5e-4
    augment: str = "dsa"
    width: int = 32


def train_net(x: torch.Tensor, y: torch.Tensor, seed: int, protocol: EvalProtocol | None = None,
              init: dict | None = None) -> ConvNet:
    """A fresh ConvNet (initialised from ``seed``, or from the state dict ``init``) trained on ``(x, y)`` only by
    the evaluation protocol."""
    p = protocol or EvalProtocol()
    dev = x.device
    net = new_net(p.width, seed, dev)
    if init is not None:
        net.load_state_dict(init)
    gen = torch.Generator().manual_seed(int(seed) + 7919)
    x, y = x.detach(), y.detach()
    n = len(x)
    half = p.steps // 2
    opt = None
    net.train()
    for s in range(p.steps):
        if s == 0 or s == half:
            opt = torch.optim.SGD(net.parameters(), lr=p.lr * (0.1 if s >= half else 1.0), momentum=p.momentum,
                                  weight_decay=p.weight_decay)
        idx = torch.randperm(n, generator=gen)[:p.batch].to(dev) if n > p.batch else slice(None)
        xb = augment(x[idx], gen, p.augment, siamese=False)
        loss = F.cross_entropy(net(xb), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval()


@torch.no_grad()
def test_metrics(net: nn.Module, device=None) -> dict:
    """Test accuracy and loss of ``net`` on the digits test split."""
    _, _, xte, yte = digits_data(device or next(net.parameters()).device)
    was = net.training
    net.eval()
    z = net(xte)
    net.train(was)
    return {"acc": float((z.argmax(-1) == yte).float().mean()), "loss": float(F.cross_entropy(z, yte))}


def evaluate_set(x: torch.Tensor, y: torch.Tensor, seeds=(0,), protocol: EvalProtocol | None = None) -> dict:
    """Mean and per-seed test accuracy of fresh ConvNets trained on ``(x, y)`` only (one net per seed)."""
    accs, losses = [], []
    for s in seeds:
        m = test_metrics(train_net(x, y, s, protocol))
        accs.append(m["acc"])
        losses.append(m["loss"])
    t = torch.tensor(accs)
    return {"acc": float(t.mean()), "acc_std": float(t.std()) if len(accs) > 1 else 0.0, "accs": accs,
            "loss": float(sum(losses) / len(losses))}


def full_data(seeds=(0,), protocol: EvalProtocol | None = None, device="cpu") -> dict:
    """The upper baseline: the same net and protocol on the whole training split."""
    xtr, ytr, _, _ = digits_data(device)
    return evaluate_set(xtr, ytr, seeds, protocol)


# ---------------------------------------------------------------- the synthetic set
class SynSet(nn.Module):
    """The learnable synthetic images (``ipc`` per class, class by class) and their fixed labels; ``ema`` holds an
    exponential moving average of the images (FTD) and ``lr`` a learnable step size (MTT, FTD)."""

    def __init__(self, images: torch.Tensor, lr: float = 0.0):
        super().__init__()
        self.images = nn.Parameter(images.clone())
        self.register_buffer("labels", labels_for(len(images) // N_CLASSES, images.device))
        self.register_buffer("ema", images.detach().clone())
        self.lr = nn.Parameter(torch.tensor(float(lr), device=images.device))


class DDResult:
    """A distilled set on disk: ``weights.safetensors`` (images, labels) + ``model.json`` (kind "dataset" and a
    card). Run folders save it as their model; :func:`load_synset` reads it."""

    kind = "dataset"

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, lr: float | None, card: dict):
        self.images, self.labels, self.lr, self.card = images.detach().cpu(), labels.detach().cpu(), lr, dict(card)

    def save(self, folder, card: dict | None = None) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_tensors(folder / "weights.safetensors", {"images": self.images, "labels": self.labels})
        atomic_write_json(folder / "model.json", {"kind": self.kind, "ipc": len(self.images) // N_CLASSES,
                                                  "lr": self.lr, "card": {**self.card, **(card or {})}})
        return folder


def load_synset(folder, device="cpu") -> tuple[torch.Tensor, torch.Tensor, dict]:
    """``(images, labels, model.json)`` of a distilled set saved by a ``lab dd run`` folder."""
    folder = Path(folder)
    meta = read_json(folder / "model.json")
    if not isinstance(meta, dict) or meta.get("kind") != "dataset":
        raise LabError(f"{folder} holds no distilled dataset (model.json kind is not 'dataset')")
    if not (folder / "weights.safetensors").exists():
        raise LabError(f"{folder}/weights.safetensors is missing")
    t = load_tensors(folder / "weights.safetensors")
    if set(t) != {"images", "labels"} or t["images"].shape[1:] != IMAGE_SHAPE or len(t["images"]) != len(t["labels"]):
        raise LabError(f"{folder}/weights.safetensors is not a distilled digits set (images (n, 1, 8, 8), labels)")
    return t["images"].to(device), t["labels"].long().to(device), meta


# ---------------------------------------------------------------- the method interface
INITS = ("real", "noise")


@dataclass
class DDConfig(Config):
    #: outer iterations of the method (one loop step each)
    steps: int = param(200, ge=1)
    #: synthetic images per class
    ipc: int = param(10, ge=1, le=50)
    #: learning rate of the synthetic pixels (SGD, momentum ``momentum_img``)
    lr_img: float = param(0.1, gt=0)
    momentum_img: float = param(0.5, ge=0, lt=1)
    #: initial images: random real images of the class, or Gaussian noise
    init: str = param("real", choices=INITS)
    #: width of the ConvNet used for distillation and evaluation
    width: int = param(32, ge=4, le=128)
    #: augmentation while distilling and evaluating (DSA on 8x8, or none)
    augment: str = param("dsa", choices=AUGMENTS)
    #: real images per class in each matching (DC, DM; 0: the whole class, as batch_real 256 gives on digits)
    batch_real: int = param(0, ge=0, note="0: the whole class")
    #: evaluation: optimiser steps of a fresh net on the synthetic set, and its learning rate
    eval_steps: int = param(300, ge=1)
    eval_lr: float = param(0.01, gt=0)
    #: evaluate every this many iterations (0: only at the end)
    eval_every: int = param(0, ge=0, note="0: only after the last iteration")
    #: keep a copy of the images every this many iterations for the evolution view (0: ten times per run)
    record_every: int = param(0, ge=0, note="0: ten frames per run")

    def validate(self):
        super().validate()
        check(self.ipc * N_CLASSES <= 1437, "ipc", self.ipc, "at most 143 images per class (the digits train split)")


class DDMethod(Trainable):
    """Base class of dataset-distillation methods (see the module docstring). Subclasses set ``Config``,
    ``paper``, ``mechanism`` and implement ``outer_step(it) -> (loss tensor or float, terms)``, which must step
    the images itself (some methods take several image steps per iteration)."""

    Config = DDConfig
    family = "dataset distillation"
    mechanism = ""
    paper = ""
    #: config overrides for a tiny run (contract tests)
    tiny: dict = {"steps": 2, "ipc": 1, "eval_steps": 5}
    #: config overrides of the benchmark and the claim (ipc is set by the caller)
    bench_config: dict = {}

    def __init__(self, config: "DDConfig | dict | None" = None, seed: int = 0, device=None):
        super().__init__(seed, device)
        self.use_config(config)
        c = self.config
        self.x_train, self.y_train, self.x_test, self.y_test = digits_data(self.device)
        self.by_class = class_indices(self.y_train)
        if c.init == "real":
            imgs, _ = random_real(c.ipc, self.seed, self.device)
        else:
            imgs = self.randn(N_CLASSES * c.ipc, *IMAGE_SHAPE)
        self.synset = self.add_net("synset", SynSet(imgs, self.initial_lr()))
        self.optimizers["images"] = torch.optim.SGD([self.synset.images], lr=c.lr_img, momentum=c.momentum_img)
        #: periodic evaluations: dicts with "it", "acc", "acc_std"
        self.history: list[dict] = []
        #: (iteration, images) frames for the evolution view
        self.frames: list[tuple[int, torch.Tensor]] = [(0, self.images().detach().cpu().clone())]
        self.setup()

    def initial_lr(self) -> float:
        return 0.0

    def setup(self) -> None: ...

    # ---- helpers for methods
    def seed_draw(self) -> int:
        """A fresh seed from the method's generator (a new random net, an augmentation draw)."""
        return int(torch.randint(0, 2**31 - 1, (1,), generator=self.rng))

    def real_class(self, c: int, n: int | None = None) -> torch.Tensor:
        """Up to ``n`` random real training images of class ``c`` (all of them when ``n`` is None or larger)."""
        idx = self.by_class[c]
        if n is not None and n < len(idx):
            idx = idx[torch.randperm(len(idx), generator=self.rng)[:n].to(idx.device)]
        return self.x_train[idx]

    def syn_class(self, c: int) -> torch.Tensor:
        ipc = self.config.ipc
        return self.synset.images[c * ipc:(c + 1) * ipc]

    def image_step(self, loss: torch.Tensor, extra: tuple = ()) -> None:
        opts = [self.optimizers["images"], *[self.optimizers[k] for k in extra]]
        for o in opts:
            o.zero_grad(set_to_none=True)
        loss.backward()
        for o in opts:
            o.step()

    def images(self) -> torch.Tensor:
        """The synthetic images a user gets (FTD: their moving average)."""
        return self.synset.images.detach()

    def labels(self) -> torch.Tensor:
        return self.synset.labels

    def eval_lr(self) -> float:
        """The learning rate of the evaluation nets (MTT/FTD: the learned step size)."""
        return self.config.eval_lr

    def protocol(self) -> EvalProtocol:
        c = self.config
        return EvalProtocol(steps=c.eval_steps, lr=self.eval_lr(), augment=c.augment, width=c.width)

    # ---- the loop interface
    def sample_batch(self, it: int) -> dict:
        return {"it": it}

    def outer_step(self, it: int):
        raise NotImplementedError

    def after_image_step(self) -> None:
        """Hook after each outer iteration (FTD: the EMA)."""

    def step(self, batch: dict, it: int) -> StepOutput:
        loss, terms = self.outer_step(it)
        loss = float(loss.detach()) if torch.is_tensor(loss) else float(loss)
        if not math.isfinite(loss) or not bool(torch.isfinite(self.synset.images).all()):
            raise LabError(f"{self.name}: the distillation diverged at iteration {it} (loss {loss}); "
                           f"lower lr_img (now {self.config.lr_img:g})")
        self.after_image_step()
        metrics = {}
        done = it + 1
        every = self.config.record_every or max(1, self.total_steps // 10)
        if done % every == 0 or done == self.total_steps:
            self.frames.append((done, self.images().detach().cpu().clone()))
        ev_every = self.config.eval_every
        if (ev_every and done % ev_every == 0) or done == self.total_steps:
            ev = self.evaluate()
            self.history.append({"it": done, **{k: v for k, v in ev.items() if k != "accs"}})
            metrics.update({"test/acc": ev["acc"]})
        return StepOutput(losses={"total": loss, **{k: float(v) for k, v in terms.items()}}, metrics=metrics)

    def snapshot(self) -> dict:
        return {"images": self.images().cpu()}

    # ---- evaluation
    def evaluate(self, seeds=(0,)) -> dict:
        """Test accuracy of fresh ConvNets (one per seed, offset by the method's seed) trained on the images only."""
        return evaluate_set(self.images(), self.labels(), [1000 + self.seed * 101 + s for s in seeds],
                            self.protocol())

    # ---- persistence
    def extra_state(self) -> dict:
        return {"history": [dict(r) for r in self.history],
                "frames": {"its": [i for i, _ in self.frames], "images": [f for _, f in self.frames]}}

    def load_extra_state(self, sd: dict) -> None:
        self.history = [dict(r) for r in sd.get("history", [])]
        fr = sd.get("frames")
        if fr:
            self.frames = [(int(i), t.clone()) for i, t in zip(fr["its"], fr["images"])]

    def config_dict(self) -> dict:
        return asdict(self.config)

    def generator(self) -> DDResult:
        """What a run folder saves: the distilled set (and the learned lr, if any) with its evaluations."""
        lr = self.eval_lr() if self.eval_lr() != self.config.eval_lr else None
        return DDResult(self.images(), self.labels(), lr, {"method": self.name, "history": self.history,
                                                          "frames_its": [i for i, _ in self.frames]})

    @classmethod
    def describe(cls) -> dict:
        return {"name": cls.name, "family": cls.family, "mechanism": cls.mechanism, "paper": cls.paper}


__all__ = ["DD_REGISTRY", "register", "list_methods", "get", "DDConfig", "DDMethod", "DDResult", "ConvNet",
           "EvalProtocol", "SynSet", "new_net", "flat_params", "unflatten", "forward_flat", "augment",
           "apply_affine", "draw_affine", "train_net", "test_metrics", "evaluate_set", "full_data", "random_real",
           "digits_data", "labels_for", "class_indices", "load_synset", "N_CLASSES", "IMAGE_SHAPE", "AUGMENTS"]
