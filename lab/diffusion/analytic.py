"""Analytic teacher for Gaussian mixtures: the exact posterior mean E[x0 | x_t].

For x_t = a x0 + s eps and component k with mean m_k and covariance C_k,
x_t | k ~ N(a m_k, S_k) with S_k = a^2 C_k + s^2 I, and
E[x0 | x_t, k] = m_k + a C_k S_k^{-1} (x_t - a m_k). The mixture posterior mean
weights these by the responsibilities p(k | x_t). With a label y the posterior is
restricted to component y (labelled variants use the component as class).

Wrapped as ``Denoiser(GMMPosterior(gmm, process), process, pred="x0")`` it is an
exact teacher: every distillation error measured against it is the method's own.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from lab.data.toy2d import GMM
from lab.diffusion.denoiser import Denoiser
from lab.diffusion.process import get_process
from lab.nets.mlp import NETS


class GMMPosterior(nn.Module):
    def __init__(self, gmm: "GMM | dict", process: str = "linear"):
        super().__init__()
        if isinstance(gmm, dict):
            gmm = GMM.from_dict(gmm)
        self.gmm_dict = gmm.to_dict()
        self.process_name = process if isinstance(process, str) else process.name
        self.process = get_process(self.process_name)
        self.register_buffer("means", gmm.means.clone())
        self.register_buffer("covs", gmm.covs.clone())
        self.register_buffer("log_w", torch.log(gmm.weights.clone()))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None, **cond) -> torch.Tensor:
        dt = torch.float32 if x.device.type == "mps" else torch.float64  # MPS has no float64
        xd = x.to(dt)
        a = self.process.alpha(t.to(dt))[:, None, None, None]  # (n,1,1,1)
        s = self.process.sigma(t.to(dt))[:, None, None, None]
        C = self.covs.to(dt)[None]  # (1,K,2,2)
        m = self.means.to(dt)[None]  # (1,K,2)
        eye = torch.eye(2, dtype=dt, device=x.device)
        S = a**2 * C + s**2 * eye  # (n,K,2,2)
        Sinv = torch.linalg.inv(S)
        d = xd[:, None, :] - a[..., 0] * m  # (n,K,2)
        maha = torch.einsum("nki,nkij,nkj->nk", d, Sinv, d)
        logdet = torch.logdet(S)
        logp = self.log_w.to(dt)[None] - 0.5 * maha - 0.5 * logdet - math.log(2 * math.pi)
        if y is not None:
            mask = torch.full_like(logp, -float("inf"))
            mask.scatter_(1, y.long()[:, None], 0.0)
            logp = logp + mask
        r = torch.softmax(logp, dim=1)  # (n,K)
        post = m + a[..., 0] * torch.einsum("nkij,nkj->nki", C @ Sinv, d)
        return (r[..., None] * post).sum(1).to(x.dtype)

    def spec(self) -> dict:
        return {"type": "gmm_posterior", "gmm": self.gmm_dict, "process": self.process_name}


NETS["gmm_posterior"] = GMMPosterior


def analytic_teacher(gmm: GMM, process: str = "linear") -> Denoiser:
    return Denoiser(GMMPosterior(gmm, process), process, pred="x0")
