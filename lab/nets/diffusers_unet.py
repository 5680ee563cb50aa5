"""A diffusers ``UNet2DModel`` as a lab network (net type ``diffusers_unet``); loading pipeline folders as
teachers and exporting them is :mod:`lab.interop.diffusers`."""
from __future__ import annotations

import json

import torch
from torch import nn

from lab.errors import LabError
from lab.nets.registry import NETS

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


class DiffusersUNet(nn.Module):
    """A diffusers ``UNet2DModel`` trained on a DDPM (VP) or flow-matching schedule, as a lab network
    ``net(x, t, y=None) -> v`` on the linear flow x_t = (1 - t) x0 + t eps (pred "v").

    ``schedule`` is ``{"type": "flow", "num_train_timesteps": T}`` (timestep = T * t, the net
    already predicts v) or ``{"type": "vp", "prediction_type": ..., "alphas_cumprod": [...]}``.
    The spec holds the UNet config and the schedule, so ``build_net(spec)`` rebuilds it.
    """

    def __init__(self, unet_config: dict, schedule: dict):
        super().__init__()
        from diffusers import UNet2DModel  # lazy: heavy import (diffusers), keeps `import lab` fast

        self.unet_config = {k: v for k, v in dict(unet_config).items() if not k.startswith("_")}
        self.schedule = dict(schedule)
        kind = self.schedule.get("type")
        if kind not in ("flow", "vp"):
            raise LabError(f"unknown diffusers schedule type {kind!r}; allowed: flow, vp")
        self.unet = UNet2DModel.from_config(self.unet_config)
        cfg = self.unet.config
        if self.unet.class_embedding is not None:
            raise LabError("class-conditional UNet2DModel (class_embed_type/num_class_embeds set) is not supported; "
                           "allowed: unconditional UNet2DModel")
        size = cfg.sample_size if isinstance(cfg.sample_size, int) else tuple(cfg.sample_size)
        h, w = (size, size) if isinstance(size, int) else size
        self.channels = int(cfg.in_channels)
        if cfg.out_channels not in (cfg.in_channels, 2 * cfg.in_channels):
            raise LabError(f"UNet2DModel out_channels={cfg.out_channels} must be in_channels={cfg.in_channels} "
                           f"(or twice it, for learned variance)")
        self.sample_shape = (self.channels, int(h), int(w))
        if kind == "vp":
            pt = self.schedule.get("prediction_type")
            if pt not in PREDICTION_TYPES:
                raise LabError(f"unknown prediction_type {pt!r}; allowed: {', '.join(PREDICTION_TYPES)}")
            ac = torch.tensor(self.schedule["alphas_cumprod"], dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
            # log-SNR per discrete timestep, decreasing in the timestep; stored negated (increasing) for searchsorted
            self.register_buffer("neg_lsnr", (torch.log1p(-ac) - torch.log(ac)).float(), persistent=False)
        else:
            self.T = float(self.schedule.get("num_train_timesteps", 1000))

    # ---- time mapping (VP schedules)
    def vp_coeffs(self, t: torch.Tensor):
        """(timestep, alpha_vp, sigma_vp) with the SNR of flow time t, clamped to the table's SNR range."""
        table = self.neg_lsnr
        t = t.to(table.dtype)
        q = 2.0 * (torch.log(t) - torch.log1p(-t))  # -log SNR_lin(t) = 2 log(t / (1 - t))
        q = q.clamp(float(table[0]), float(table[-1]))
        hi = torch.searchsorted(table, q.contiguous()).clamp(1, table.numel() - 1)
        lo = hi - 1
        frac = ((q - table[lo]) / (table[hi] - table[lo]).clamp_min(1e-12)).clamp(0.0, 1.0)
        tau = lo.to(t.dtype) + frac
        a = torch.sigmoid(-q).sqrt()  # alpha^2 = SNR / (1 + SNR)
        s = torch.sigmoid(q).sqrt()
        return tau, a, s

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None, **cond) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.sample_shape:
            raise LabError(f"this UNet takes images of shape {self.sample_shape}, got {tuple(x.shape[1:])}")
        if y is not None or cond:
            raise LabError("this diffusers UNet is unconditional; it takes no label or extra conditions")
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        if self.schedule["type"] == "flow":
            return self._out(x, t.to(x.dtype) * self.T)
        tau, a, s = self.vp_coeffs(t)
        tt = t.to(a.dtype)
        # x_vp = x_lin * sigma_vp / t = x_lin * alpha_vp / (1 - t) when the SNRs match; each form is finite on its half
        scale = torch.where(tt >= 0.5, s / tt.clamp_min(1e-12), a / (1 - tt).clamp_min(1e-12))
        bc = lambda c: c.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))  # noqa: E731
        xv = x * bc(scale)
        out = self._out(xv, tau.to(x.dtype))
        a, s = bc(a), bc(s)
        pt = self.schedule["prediction_type"]
        if pt == "epsilon":
            eps = out
            x0 = (xv - s * eps) / a
        elif pt == "v_prediction":  # diffusers' v = alpha eps - sigma x0
            x0 = a * xv - s * out
            eps = s * xv + a * out
        else:  # sample
            x0 = out
            eps = (xv - a * x0) / s
        return eps - x0

    def _out(self, x, timesteps):
        out = self.unet(x, timesteps).sample
        return out[:, : self.channels]  # learned-variance models: the first half is the mean prediction

    def spec(self) -> dict:
        return {"type": "diffusers_unet", "unet_config": jsonable(self.unet_config), "schedule": self.schedule}


NETS["diffusers_unet"] = DiffusersUNet


def jsonable(d: dict) -> dict:
    return json.loads(json.dumps(dict(d), default=lambda o: list(o) if isinstance(o, tuple) else str(o)))
