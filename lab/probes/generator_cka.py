"""Teacher-student feature similarity for generators: layer-by-layer linear CKA on matched noisy inputs.

The classifier version (:func:`lab.probes.kd.layer_cka`) feeds both networks the same images. A diffusion
network also takes a time, so here both networks see the same noisy inputs x_t = alpha(t) x0 + sigma(t) eps
at the same t (x0: the teacher's own samples, eps: fixed noise), with the same labels when both are
class-conditional. The student's main network is the first of ``student.nets()`` (the flow of a reflow
student, the map of a flow-map student). An extra scalar input the student has and the teacher lacks (a
flow map's target time s, a shortcut's step size d, a guidance weight w) is set to 0: the map then jumps
straight to the data, the shortcut takes its smallest step, the guided student is unguided.

Layers default to the blocks a person would compare: each hidden activation and the output of an MLP; the
down blocks, the middle block, the up blocks and the output convolution of a UNet.
"""
from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from lab.diffusion.generators import Generator, make_noise
from lab.errors import LabError
from lab.metrics.similarity import cka_matrix
from lab.metrics.threads import blas_threads
from lab.nets.hooks import layer_names, tap_features

_ACTIVATIONS = (nn.SiLU, nn.ReLU, nn.GELU, nn.Tanh, nn.LeakyReLU, nn.Mish)


def default_layers(net: nn.Module) -> list[str]:
    """The layers compared by default: a UNet's down/mid/up blocks and output; an MLP's hidden activations and
    output; else every named submodule (``lab.nets.hooks.layer_names``)."""
    unet = getattr(net, "unet", None)
    if unet is not None and hasattr(unet, "down_blocks"):
        return ([f"unet.down_blocks.{i}" for i in range(len(unet.down_blocks))] + ["unet.mid_block"]
                + [f"unet.up_blocks.{i}" for i in range(len(unet.up_blocks))] + ["unet.conv_out"])
    body = getattr(net, "body", None)
    if isinstance(body, nn.Sequential):
        idx = [i for i, m in enumerate(body) if isinstance(m, _ACTIVATIONS)] + [len(body) - 1]
        return [f"body.{i}" for i in idx]
    return layer_names(net)


def main_net(gen: Generator, who: str) -> nn.Module:
    """The network of ``gen`` that maps (x_t, t) (its first); a generator without one is a LabError."""
    nets = gen.nets()
    net = next(iter(nets.values()), None)
    if net is None or not any(True for _ in net.parameters()) or not hasattr(net, "extra"):
        raise LabError(f"the {who} ({gen.kind}) has no network over (x_t, t) to compare "
                       f"(its nets: {', '.join(nets) or 'none'}); allowed: generators built on a denoiser network")
    return net


def _labels(net: nn.Module, y: torch.Tensor | None, n: int) -> torch.Tensor | None:
    k = int(getattr(net, "n_classes", 0) or 0)
    if not k:
        return None
    if y is not None and y.max() < k:
        return y
    return torch.full((n,), k, dtype=torch.long)  # another class count: the null label (unconditional)


@torch.no_grad()
def _features(net: nn.Module, x_t, t, y, layers) -> dict[str, torch.Tensor]:
    dev = next(net.parameters()).device
    n = x_t.shape[0]
    cond = {k: torch.zeros(n, device=dev) for k in getattr(net, "extra", ())}
    yy = _labels(net, y, n)
    was = net.training
    net.eval()
    try:
        _, feats = tap_features(net, x_t.to(dev), layers, t=torch.full((n,), float(t), device=dev),
                                y=None if yy is None else yy.to(dev), **cond)
    finally:
        net.train(was)
    return {k: (v[0] if isinstance(v, (tuple, list)) else v).float().cpu().reshape(n, -1) for k, v in feats.items()}


def generator_layer_cka(teacher: Generator, student: Generator, n: int = 256, times=(0.25, 0.5, 0.75),
                        teacher_nfe: int = 16, seed: int = 0, teacher_layers=None,
                        student_layers=None) -> pd.DataFrame:
    """Linear CKA between each teacher layer and each student layer on the same noisy inputs at each time t.

    Returns a long DataFrame with columns t, teacher_layer, student_layer, cka (teacher layers in order, each
    with the student layers in order), ready for ``lab.viz.kd.cka_heatmap`` after selecting one t.
    """
    if not isinstance(n, int) or isinstance(n, bool) or not 8 <= n <= 4096:
        raise LabError(f"n must be an integer in [8, 4096], got {n!r}")
    times = [float(t) for t in times]
    if not times or not all(0.0 < t <= 1.0 for t in times):
        raise LabError(f"times must be a non-empty list of numbers in (0, 1], got {times!r}")
    tnet, snet = main_net(teacher, "teacher"), main_net(student, "student")
    tl = list(teacher_layers) if teacher_layers is not None else default_layers(tnet)
    sl = list(student_layers) if student_layers is not None else default_layers(snet)
    k = int(getattr(tnet, "n_classes", 0) or 0)
    y = (torch.arange(n) % k) if k else None
    x0 = teacher.sample(n, nfe=teacher_nfe, seed=seed, y=None if y is None else y.to(teacher.device)).x.cpu()
    eps = make_noise(n, teacher.shape, seed=seed + 1)
    process = teacher.denoiser.process if hasattr(teacher, "denoiser") else None
    if process is None:
        raise LabError(f"the teacher ({teacher.kind}) has no noise process; allowed: a flow/diffusion teacher")
    rows = []
    for t in times:
        x_t = process.add_noise(x0, eps, torch.full((n,), t))
        ft, fs = _features(tnet, x_t, t, y, tl), _features(snet, x_t, t, y, sl)
        with blas_threads():
            mat = cka_matrix(ft, fs)
        rows += [{"t": t, "teacher_layer": a, "student_layer": b, "cka": float(mat.loc[a, b])}
                 for a in mat.index for b in mat.columns]
    return pd.DataFrame(rows)


__all__ = ["generator_layer_cka", "default_layers", "main_net"]
