"""A time- and class-conditioned diffusers ``UNet2DModel`` behind the lab's network interface.

``net(x, t, y=None, **cond)`` with t in [0, 1]: the UNet sees the timestep ``1000 * t``
(diffusers' flow-matching convention: timestep = sigma * num_train_timesteps).

Conditioning: the label (with one extra "null" label, index ``n_classes``, for
classifier-free guidance) and any extra scalar conditions (``extra``, for example a
guidance weight ``w`` or a step size ``d``) are embedded by this wrapper and summed into
one vector that enters the UNet through ``class_embed_type="identity"``: it is added to
the time embedding, exactly where diffusers adds its own class embedding. A fixed
condition is therefore a constant added to the time embedding, which is how
:mod:`lab.interop.diffusers` folds it into a plain (unconditional) ``UNet2DModel``.
"""
from __future__ import annotations

import torch
from torch import nn

from lab.errors import LabError
from lab.nets.mlp import FourierTime
from lab.nets.registry import NETS

TIME_SCALE = 1000.0


def default_unet_spec(shape: tuple) -> dict:
    """The default UNet for images of ``shape`` (C, H, W): about 1.06 M parameters at 8x8 (the shipped digits teacher), 2.5 M at 16x16.

    No attention in the resolution blocks; diffusers' mid block keeps its one self-attention
    layer at the lowest resolution (2x2 for 8x8 digits)."""
    c, h, w = shape
    if h != w:
        raise LabError(f"the UNet needs square images, got {h}x{w}")
    if h % 4:
        raise LabError(f"the UNet needs an image side divisible by 4, got {h}")
    chans = [32, 64, 64]
    return {"type": "unet", "channels": c, "size": h, "block_out_channels": chans, "layers_per_block": 1,
            "norm_num_groups": 8, "attention": False}


class UNet(nn.Module):
    def __init__(self, channels: int = 1, size: int = 8, block_out_channels=(32, 64, 64), layers_per_block: int = 1,
                 norm_num_groups: int = 8, attention: bool = False, n_classes: int = 0, extra: tuple[str, ...] = (),
                 out_channels: int | None = None, mid_attention: bool = True):
        super().__init__()
        from diffusers import UNet2DModel  # lazy: heavy import (diffusers), keeps `import lab` fast

        chans = tuple(int(c) for c in block_out_channels)
        if len(chans) < 2 or any(c % norm_num_groups for c in chans):
            raise LabError(f"block_out_channels must have >= 2 entries divisible by norm_num_groups={norm_num_groups}, got {list(chans)}")
        if size % (2 ** (len(chans) - 1)):
            raise LabError(f"image size {size} is not divisible by 2^{len(chans) - 1} (one halving per extra block)")
        self.channels, self.size, self.chans = int(channels), int(size), chans
        self.layers_per_block, self.norm_num_groups, self.attention = int(layers_per_block), int(norm_num_groups), bool(attention)
        self.n_classes, self.extra, self.mid_attention = int(n_classes), tuple(extra), bool(mid_attention)
        self.out_channels = int(out_channels or channels)
        down = ["DownBlock2D"] * len(chans)
        up = ["UpBlock2D"] * len(chans)
        if attention:
            down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
        conditional = bool(self.n_classes or self.extra)
        self.unet = UNet2DModel(sample_size=size, in_channels=channels, out_channels=self.out_channels,
                                block_out_channels=chans, layers_per_block=layers_per_block,
                                down_block_types=tuple(down), up_block_types=tuple(up), norm_num_groups=norm_num_groups,
                                class_embed_type="identity" if conditional else None, add_attention=self.mid_attention)
        emb_dim = chans[0] * 4  # diffusers' time_embed_dim
        self.emb_dim = emb_dim
        if self.n_classes:
            self.y_emb = nn.Embedding(self.n_classes + 1, emb_dim)
            nn.init.normal_(self.y_emb.weight, std=0.02)
        self.extra_emb = nn.ModuleDict({k: nn.Sequential(FourierTime(chans[0], scale=100.0), nn.Linear(chans[0], emb_dim),
                                                         nn.SiLU(), nn.Linear(emb_dim, emb_dim)) for k in self.extra})
        self.sample_shape = (self.channels, self.size, self.size)

    def cond_embedding(self, n: int, y=None, device=None, dtype=torch.float32, **cond) -> torch.Tensor | None:
        """The vector added to the time embedding for labels y and extra conditions (None if unconditional)."""
        if not (self.n_classes or self.extra):
            return None
        e = torch.zeros(n, self.emb_dim, device=device, dtype=dtype)
        if self.n_classes:
            if y is None:
                y = torch.full((n,), self.n_classes, device=device, dtype=torch.long)
            e = e + self.y_emb(y.to(device))
        for k in self.extra:
            if k not in cond:
                raise LabError(f"this network needs the condition {k!r}; it takes: {', '.join(self.extra)}")
            v = torch.as_tensor(cond[k], device=device, dtype=dtype)
            e = e + self.extra_emb[k](v.expand(n) if v.ndim == 0 else v)
        return e

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None, **cond) -> torch.Tensor:
        if x.shape[1:] != self.sample_shape:
            raise LabError(f"this UNet takes images of shape {self.sample_shape}, got {tuple(x.shape[1:])}")
        emb = self.cond_embedding(x.shape[0], y, x.device, x.dtype, **cond)
        ts = (t.to(x.dtype) * TIME_SCALE).expand(x.shape[0]) if t.ndim == 0 else t.to(x.dtype) * TIME_SCALE
        return self.unet(x, ts, class_labels=emb).sample

    def spec(self) -> dict:
        return {"type": "unet", "channels": self.channels, "size": self.size, "block_out_channels": list(self.chans),
                "layers_per_block": self.layers_per_block, "norm_num_groups": self.norm_num_groups,
                "attention": self.attention, "n_classes": self.n_classes, "extra": list(self.extra),
                "out_channels": self.out_channels, "mid_attention": self.mid_attention}


NETS["unet"] = UNet
