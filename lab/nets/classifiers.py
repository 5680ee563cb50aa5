"""Small classifiers and a tiny causal language model with NAMED layers, for knowledge distillation.

Every network here:

- is a plain ``torch.nn.Module`` whose tap-able layers are direct children with fixed names,
  listed in order by ``net.feature_layers`` (read them with :class:`lab.nets.hooks.FeatureTap`);
- has ``spec()`` returning a JSON-serialisable dict, and ``build_classifier(spec)`` (or
  ``lab.nets.build_net(spec)``, once this module is imported) rebuilds it.

What each named layer outputs (the tensor a forward hook sees):

- ``MLPClassifier``: ``fcK`` -> (n, hidden_K) after ReLU; ``head`` -> (n, n_classes) logits.
- ``CNNClassifier``: ``convK`` -> (n, channels_K, size, size) after ReLU; ``pool`` -> (n, channels[-1] * pool**2);
  ``head`` -> logits.
- ``TinyViT``: ``patch_embed`` -> (n, tokens, dim) (with position embedding); ``blockK`` -> (n, tokens, dim);
  ``norm`` -> (n, tokens, dim); ``head`` -> logits (from the mean over tokens).
- ``TinyLM``: ``embed`` -> (n, seq, dim); ``blockK`` -> (n, seq, dim); ``norm`` -> (n, seq, dim);
  ``head`` -> (n, seq, vocab) logits.

Transformers (``TinyViT``, ``TinyLM``) take ``return_attention=True`` and then return
``(logits, attentions, values)``: per block, the attention probabilities (n, heads, q, k) and the
values (n, heads, k, head_dim) (what MiniLM and attention transfer need). Attention is written out
(softmax(q k^T / sqrt(d))) so those probabilities exist; at these sizes it costs nothing.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lab.errors import LabError
from lab.nets.registry import NETS
from lab.nets.specs import check_net_spec


def _positive(**kw):
    for k, v in kw.items():
        vals = v if isinstance(v, (tuple, list)) else (v,)
        if len(vals) == 0 or any(int(x) < 1 for x in vals):
            raise LabError(f"{k} must be a positive integer (or a non-empty list of them), got {v!r}")


class MLPClassifier(nn.Module):
    """Flatten -> fc1 -> ReLU -> fc2 -> ReLU ... -> head. Inputs of any shape (n, ...) with in_dim values each."""

    def __init__(self, in_dim: int, hidden=(128, 128), n_classes: int = 10):
        super().__init__()
        hidden = tuple(int(h) for h in hidden)
        _positive(in_dim=in_dim, hidden=hidden, n_classes=n_classes)
        self.in_dim, self.hidden, self.n_classes = int(in_dim), hidden, int(n_classes)
        d = self.in_dim
        for k, h in enumerate(hidden, 1):
            self.add_module(f"fc{k}", nn.Sequential(nn.Linear(d, h), nn.ReLU()))
            d = h
        self.head = nn.Linear(d, self.n_classes)
        self.feature_layers = [f"fc{k}" for k in range(1, len(hidden) + 1)] + ["head"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.reshape(x.shape[0], -1)
        if h.shape[1] != self.in_dim:
            raise LabError(f"this MLPClassifier takes {self.in_dim} input values per sample, got {h.shape[1]}")
        for name in self.feature_layers:
            h = getattr(self, name)(h)
        return h

    def spec(self) -> dict:
        return {"type": "clf_mlp", "in_dim": self.in_dim, "hidden": list(self.hidden), "n_classes": self.n_classes}


class CNNClassifier(nn.Module):
    """conv1 -> conv2 ... (3x3, same padding, ReLU) -> pool (adaptive average to pool x pool, flattened) -> head."""

    def __init__(self, in_channels: int = 1, size: int = 8, channels=(16, 32), n_classes: int = 10, pool: int = 2):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        _positive(in_channels=in_channels, size=size, channels=channels, n_classes=n_classes, pool=pool)
        self.in_channels, self.size, self.channels = int(in_channels), int(size), channels
        self.n_classes, self.pool_size = int(n_classes), int(pool)
        c = self.in_channels
        for k, ck in enumerate(channels, 1):
            self.add_module(f"conv{k}", nn.Sequential(nn.Conv2d(c, ck, 3, padding=1), nn.ReLU()))
            c = ck
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(self.pool_size), nn.Flatten())
        self.head = nn.Linear(c * self.pool_size ** 2, self.n_classes)
        self.feature_layers = [f"conv{k}" for k in range(1, len(channels) + 1)] + ["pool", "head"]
        self.sample_shape = (self.in_channels, self.size, self.size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise LabError(f"this CNNClassifier takes images (n, {self.in_channels}, H, W), got {tuple(x.shape)}")
        h = x
        for name in self.feature_layers:
            h = getattr(self, name)(h)
        return h

    def spec(self) -> dict:
        return {"type": "clf_cnn", "in_channels": self.in_channels, "size": self.size, "channels": list(self.channels),
                "n_classes": self.n_classes, "pool": self.pool_size}


class Attention(nn.Module):
    """Multi-head self-attention written out, so its probabilities and values can be returned."""

    def __init__(self, dim: int, heads: int, causal: bool = False):
        super().__init__()
        if dim % heads:
            raise LabError(f"dim must be divisible by heads, got dim={dim}, heads={heads}")
        self.dim, self.heads, self.causal = dim, heads, causal
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor):
        n, t, d = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // self.heads)
        if self.causal:
            mask = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
            scores = scores.masked_fill(mask, float("-inf"))
        attn = scores.softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(n, t, d)
        return self.proj(out), attn, v


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x)). Returns (x, attn, values)."""

    def __init__(self, dim: int, heads: int, causal: bool = False, mlp_ratio: int = 2):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, causal)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))
        self.last_attention: torch.Tensor | None = None
        self.last_values: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, attn, v = self.attn(self.ln1(x))
        # kept for the caller that asked (return_attention=True); cleared by the parent otherwise
        self.last_attention, self.last_values = attn, v
        x = x + a
        return x + self.mlp(self.ln2(x))


class _Transformer(nn.Module):
    """Shared forward for TinyViT and TinyLM: stem -> blocks -> norm -> (readout) -> head."""

    stem: str

    def _run(self, x, return_attention: bool, readout):
        h = getattr(self, self.stem)(x)
        attns, values = [], []
        for k in range(1, self.depth + 1):
            block = getattr(self, f"block{k}")
            h = block(h)
            if return_attention:
                attns.append(block.last_attention)
                values.append(block.last_values)
            block.last_attention = block.last_values = None  # hold no graph between calls
        logits = self.head(readout(self.norm(h)))
        return (logits, attns, values) if return_attention else logits


class PatchEmbed(nn.Module):
    """(n, C, H, W) -> (n, (H/p)(W/p), dim): a strided convolution plus a learned position embedding."""

    def __init__(self, in_channels: int, size: int, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.pos = nn.Parameter(torch.zeros(1, (size // patch) ** 2, dim))
        nn.init.normal_(self.pos, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2) + self.pos


class TinyViT(_Transformer):
    """patch_embed -> block1..blockD -> norm -> mean over tokens -> head."""

    stem = "patch_embed"

    def __init__(self, in_channels: int = 1, size: int = 8, patch: int = 2, dim: int = 32, depth: int = 2,
                 heads: int = 2, n_classes: int = 10):
        super().__init__()
        _positive(in_channels=in_channels, size=size, patch=patch, dim=dim, depth=depth, heads=heads,
                  n_classes=n_classes)
        if size % patch:
            raise LabError(f"size must be divisible by patch, got size={size}, patch={patch}")
        self.in_channels, self.size, self.patch, self.dim = int(in_channels), int(size), int(patch), int(dim)
        self.depth, self.heads, self.n_classes = int(depth), int(heads), int(n_classes)
        self.patch_embed = PatchEmbed(self.in_channels, self.size, self.patch, self.dim)
        for k in range(1, self.depth + 1):
            self.add_module(f"block{k}", Block(self.dim, self.heads))
        self.norm = nn.LayerNorm(self.dim)
        self.head = nn.Linear(self.dim, self.n_classes)
        self.feature_layers = ["patch_embed"] + [f"block{k}" for k in range(1, self.depth + 1)] + ["norm", "head"]
        self.sample_shape = (self.in_channels, self.size, self.size)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        if x.ndim != 4 or tuple(x.shape[1:]) != self.sample_shape:
            raise LabError(f"this TinyViT takes images (n, {self.in_channels}, {self.size}, {self.size}), "
                           f"got {tuple(x.shape)}")
        return self._run(x, return_attention, lambda h: h.mean(dim=1))

    def spec(self) -> dict:
        return {"type": "clf_vit", "in_channels": self.in_channels, "size": self.size, "patch": self.patch,
                "dim": self.dim, "depth": self.depth, "heads": self.heads, "n_classes": self.n_classes}


class TokenEmbed(nn.Module):
    """(n, T) token ids -> (n, T, dim): token embedding plus a learned position embedding."""

    def __init__(self, vocab: int, seq_len: int, dim: int):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(seq_len, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(tokens.shape[1], device=tokens.device)
        return self.tok(tokens) + self.pos(pos)[None]


class TinyLM(_Transformer):
    """A causal transformer language model: embed -> block1..blockD -> norm -> head; logits (n, T, vocab).

    The logits at position i depend only on tokens 0..i (causal mask), so they predict token i+1.
    """

    stem = "embed"

    def __init__(self, vocab: int = 17, dim: int = 32, depth: int = 2, heads: int = 2, seq_len: int = 32):
        super().__init__()
        _positive(vocab=vocab, dim=dim, depth=depth, heads=heads, seq_len=seq_len)
        self.vocab, self.dim, self.depth = int(vocab), int(dim), int(depth)
        self.heads, self.seq_len = int(heads), int(seq_len)
        self.embed = TokenEmbed(self.vocab, self.seq_len, self.dim)
        for k in range(1, self.depth + 1):
            self.add_module(f"block{k}", Block(self.dim, self.heads, causal=True))
        self.norm = nn.LayerNorm(self.dim)
        self.head = nn.Linear(self.dim, self.vocab)
        self.feature_layers = ["embed"] + [f"block{k}" for k in range(1, self.depth + 1)] + ["norm", "head"]

    def forward(self, tokens: torch.Tensor, return_attention: bool = False):
        if tokens.ndim != 2 or tokens.dtype not in (torch.long, torch.int, torch.int32, torch.int64):
            raise LabError(f"TinyLM takes integer tokens of shape (n, T), got {tuple(tokens.shape)} {tokens.dtype}")
        if tokens.shape[1] > self.seq_len:
            raise LabError(f"sequence length {tokens.shape[1]} exceeds seq_len={self.seq_len}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.vocab):
            raise LabError(f"tokens must lie in 0..{self.vocab - 1}, got {int(tokens.min())}..{int(tokens.max())}")
        return self._run(tokens, return_attention, lambda h: h)

    def spec(self) -> dict:
        return {"type": "tiny_lm", "vocab": self.vocab, "dim": self.dim, "depth": self.depth, "heads": self.heads,
                "seq_len": self.seq_len}


CLASSIFIERS = {"clf_mlp": MLPClassifier, "clf_cnn": CNNClassifier, "clf_vit": TinyViT, "tiny_lm": TinyLM}


def build_classifier(spec: dict) -> nn.Module:
    """Rebuild a network from its ``spec()`` (a JSON dict with ``type`` one of clf_mlp, clf_cnn, clf_vit, tiny_lm)."""
    spec = check_net_spec(spec, "net", types=CLASSIFIERS, default_type=None)
    return CLASSIFIERS[spec.pop("type")](**spec)


def param_count(net: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (each shared tensor counted once)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad or not trainable_only)


NETS.update(CLASSIFIERS)  # build_net builds classifiers too (build_net validates the spec first)

__all__ = ["MLPClassifier", "CNNClassifier", "TinyViT", "TinyLM", "Attention", "Block", "build_classifier",
           "param_count", "CLASSIFIERS"]
