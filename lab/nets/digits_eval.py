"""Two small judges for 8x8 digits, trained by the lab itself (nothing is downloaded).

- ``features``: a CNN (conv 32 -> conv 64 -> pool -> 128-d feature -> linear 10) trained
  as a classifier on the digits TRAIN split with 1-pixel random shifts and Gaussian-noise
  augmentation (so its features stay meaningful on imperfect samples). ``net.features(x)``
  returns the 128-d penultimate vector; FD-digits, KID, precision/recall and diversity are
  computed on it (:mod:`lab.metrics.images`).
- ``classifier``: a separate judge of a different architecture (an MLP over the 64 pixels)
  and seed, used only for the class accuracy of conditional samples, so that the judge is
  not the feature extractor.

Both take (N, 1, 8, 8) images in [-1, 1]; (N, 1, 16, 16) inputs (``digits16``) are
average-pooled to 8x8 first, so one net serves both data sets.

    net = load_eval_net("features")   # assets/zoo/digits/features, else the cache, else trained (< 60 s)
    build_eval_nets()                 # (re)build the shipped folders (used by ``lab zoo build``)
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from lab.errors import LabError
from lab.io import ZOO_ASSETS, atomic_write_json, cache_root, load_tensors, read_json, save_tensors

KINDS = ("features", "classifier")
#: the shipped judges (the zoo entries ``digits/features`` and ``digits/classifier``)
ASSETS = ZOO_ASSETS / "digits"
SIZES = (8, 16)
#: training recipe of each kind (seed differs so the two judges share nothing)
RECIPES = {
    "features": dict(seed=0, steps=1200, batch=128, lr=2e-3, shift=1, noise_prob=0.5, noise_max=0.5),
    "classifier": dict(seed=1, steps=1500, batch=128, lr=2e-3, shift=1, noise_prob=0.5, noise_max=0.5),
}


def to_8x8(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, 8, 8) as is, (N, 1, 16, 16) average-pooled to 8x8; anything else is a LabError."""
    if x.ndim != 4 or x.shape[1] != 1 or tuple(x.shape[2:]) not in ((8, 8), (16, 16)):
        raise LabError(f"digit images must have shape (N, 1, 8, 8) or (N, 1, 16, 16), got {tuple(x.shape)}")
    return F.avg_pool2d(x, 2) if x.shape[-1] == 16 else x


class DigitsFeatureNet(nn.Module):
    """conv 3x3 (1->c1) -> conv 3x3 stride 2 (c1->c2, 4x4) -> 2x2 avg pool (c2 x 2 x 2) -> linear(feat) = features -> linear(10)."""

    kind = "features"

    def __init__(self, channels=(32, 64), feat: int = 128, n_classes: int = 10):
        super().__init__()
        c1, c2 = (int(c) for c in channels)
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.fc = nn.Linear(c2 * 2 * 2, int(feat))
        self.head = nn.Linear(int(feat), int(n_classes))
        self._spec = {"type": "digits_features", "channels": [c1, c2], "feat": int(feat), "n_classes": int(n_classes)}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv1(to_8x8(x)))
        h = F.avg_pool2d(F.relu(self.conv2(h)), 2)
        return F.relu(self.fc(h.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def spec(self) -> dict:
        return dict(self._spec)


class DigitsClassifier(nn.Module):
    """An MLP over the 64 pixels (a different architecture from the feature net)."""

    kind = "classifier"

    def __init__(self, hidden=(256, 128), n_classes: int = 10, dropout: float = 0.1):
        super().__init__()
        hidden = [int(h) for h in hidden]
        layers, d = [], 64
        for h in hidden:
            layers += [nn.Linear(d, h), nn.GELU(), nn.Dropout(dropout)]
            d = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(d, int(n_classes))
        self._spec = {"type": "digits_classifier", "hidden": hidden, "n_classes": int(n_classes), "dropout": dropout}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(to_8x8(x).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def spec(self) -> dict:
        return dict(self._spec)


def build_eval_net(spec: dict) -> nn.Module:
    spec = dict(spec)
    kind = spec.pop("type", None)
    if kind == "digits_features":
        return DigitsFeatureNet(**spec)
    if kind == "digits_classifier":
        return DigitsClassifier(**spec)
    raise LabError(f"unknown digits eval net type {kind!r}; allowed: digits_features, digits_classifier")


def _check_kind(kind) -> str:
    if kind not in KINDS:
        raise LabError(f"unknown digits eval net kind {kind!r}; allowed: {', '.join(KINDS)}")
    return kind


def _augment(x: torch.Tensor, g: torch.Generator, shift: int, noise_prob: float, noise_max: float) -> torch.Tensor:
    """Random shifts by up to ``shift`` pixels (background fill) and Gaussian noise on a share of the batch."""
    n = x.shape[0]
    if shift:
        pad = F.pad(x, (shift,) * 4, value=-1.0)
        dx = torch.randint(0, 2 * shift + 1, (n,), generator=g)
        dy = torch.randint(0, 2 * shift + 1, (n,), generator=g)
        rows = (dy[:, None] + torch.arange(8))[:, :, None].expand(n, 8, 8)
        cols = (dx[:, None] + torch.arange(8))[:, None, :].expand(n, 8, 8)
        x = pad[torch.arange(n)[:, None, None], 0, rows, cols][:, None]
    if noise_prob:
        on = (torch.rand(n, generator=g) < noise_prob).float()
        sigma = torch.rand(n, generator=g) * noise_max * on
        x = x + sigma[:, None, None, None] * torch.randn(x.shape, generator=g)
    return x


@torch.no_grad()
def test_accuracy(net: nn.Module, device=None) -> float:
    """Accuracy of ``net`` on the digits TEST split (360 images)."""
    from lab.data.images import Digits  # lazy: digits data only when testing the eval net

    te = Digits("test")
    device = next(net.parameters()).device if device is None else torch.device(device)
    was = net.training
    net.eval()
    pred = net(te.x.to(device)).argmax(1).cpu()
    net.train(was)
    return float((pred == te.y).float().mean())


def train_eval_net(kind: str, seed: int | None = None, steps: int | None = None, device=None,
                   progress: bool = False) -> nn.Module:
    """Train a digits judge (``kind`` in ("features", "classifier")) on the digits TRAIN split.

    Everything random is drawn on CPU from a generator seeded by ``seed`` (the recipe's seed
    when None), so the same seed gives the same weights. Returns the net in eval mode with a
    ``card`` (recipe, test accuracy, training time).
    """
    from lab.data.images import Digits  # lazy: digits data only when training the eval net

    _check_kind(kind)
    r = dict(RECIPES[kind])
    if seed is not None:
        r["seed"] = int(seed)
    if steps is not None:
        if int(steps) < 1:
            raise LabError(f"steps must be >= 1, got {steps!r}")
        r["steps"] = int(steps)
    device = torch.device(device or "cpu")
    g = torch.Generator().manual_seed(r["seed"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(r["seed"])
        net = DigitsFeatureNet() if kind == "features" else DigitsClassifier()
    net.to(device).train()
    tr = Digits("train")
    opt = torch.optim.AdamW(net.parameters(), lr=r["lr"], weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=r["lr"], total_steps=r["steps"], pct_start=0.1)
    bar = None
    if progress:
        from tqdm.auto import tqdm  # lazy: progress bar only while training
        bar = tqdm(total=r["steps"], desc=f"digits {kind} net")
    t0, c0 = time.perf_counter(), time.process_time()
    # dropout masks come from the global RNG: fork it so training is deterministic and leaves no trace
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(r["seed"] + 1)
        for _ in range(r["steps"]):
            idx = torch.randint(0, len(tr), (r["batch"],), generator=g)
            x = _augment(tr.x[idx], g, r["shift"], r["noise_prob"], r["noise_max"]).to(device)
            loss = F.cross_entropy(net(x), tr.y[idx].to(device), label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    net.eval()
    r["augmentation"] = (f"random shifts by up to {r['shift']} pixel(s); Gaussian noise with sigma ~ U(0, {r['noise_max']}) "
                         f"on {r['noise_prob']:.0%} of each batch")
    net.card = {"kind": kind, "data": "digits (train split, 1437 images)", "recipe": r,
                "test_accuracy": round(test_accuracy(net), 4), "train_seconds": round(time.perf_counter() - t0, 1),
                "train_cpu_seconds": round(time.process_time() - c0, 1), "torch_threads": torch.get_num_threads()}
    return net


def save_eval_net(net: nn.Module, folder, card: dict | None = None) -> Path:
    """Write ``weights.safetensors`` then ``model.json`` (spec + card) into ``folder`` (atomic files)."""
    folder = Path(folder)
    card = dict(card if card is not None else getattr(net, "card", {}))
    save_tensors(folder / "weights.safetensors", net.state_dict())
    atomic_write_json(folder / "model.json", {"kind": net.kind, "spec": net.spec(), "card": card})
    return folder


def cache_dir() -> Path:
    """Where judges trained on the spot are cached: the zoo's cache (``$LAB_CACHE/zoo``), folder ``digits``."""
    return cache_root() / "zoo" / "digits"


def find_eval_net(kind: str) -> Path | None:
    """The folder of a shipped (assets first) or cached judge, or None."""
    _check_kind(kind)
    for root in (ASSETS, cache_dir()):
        if (root / kind / "model.json").exists():
            return root / kind
    return None


def load_eval_net(folder_or_kind, device=None, progress: bool = True) -> nn.Module:
    """Load a judge from a folder, or by kind ("features"/"classifier"): assets, else cache, else trained and cached.

    The returned net is in eval mode; ``net.folder`` is where it was loaded from and
    ``net.card`` its model card.
    """
    device = torch.device(device or "cpu")
    if isinstance(folder_or_kind, str) and folder_or_kind in KINDS:
        folder = find_eval_net(folder_or_kind)
        if folder is None:
            net = train_eval_net(folder_or_kind, device="cpu", progress=progress)
            folder = save_eval_net(net, cache_dir() / folder_or_kind)
    else:
        folder = Path(folder_or_kind)
        if not (folder / "model.json").exists():
            raise LabError(f"no digits eval net at {str(folder)!r}; allowed: a folder with model.json, or one of "
                           f"{', '.join(KINDS)}")
    meta = read_json(folder / "model.json")
    net = build_eval_net(meta["spec"])
    net.load_state_dict(load_tensors(folder / "weights.safetensors"))
    net.to(device).eval()
    net.card, net.folder = meta.get("card", {}), folder
    return net


def build_eval_nets(root=ASSETS, progress: bool = True) -> dict[str, Path]:
    """Train both judges and write them to ``root/<kind>`` (the shipped folders by default)."""
    root = Path(root)
    return {kind: save_eval_net(train_eval_net(kind, progress=progress), root / kind) for kind in KINDS}


__all__ = ["KINDS", "ASSETS", "DigitsFeatureNet", "DigitsClassifier", "build_eval_net", "train_eval_net",
           "save_eval_net", "load_eval_net", "find_eval_net", "build_eval_nets", "test_accuracy", "to_8x8"]
