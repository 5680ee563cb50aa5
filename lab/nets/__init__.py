"""Network builders. Every net is built from a JSON-serialisable spec: ``build_net(spec)``.

The network is chosen by the data, not by the method: ``spec_for(shape, spec)`` turns a
method's ``student_net`` (an MLP spec by default) into an MLP over points of shape (D,)
or, for images (C, H, W), into the data's default diffusers UNet unless the spec
already is a ``unet`` spec.
"""
from lab.errors import LabError
from lab.nets.mlp import TimeMLP, build_net, net_spec
from lab.nets.unet import UNet, default_unet_spec
from lab.nets import diffusers_unet  # noqa: E402,F401  registers diffusers_unet with build_net
from lab.nets import classifiers  # noqa: E402,F401  registers clf_mlp, clf_cnn, clf_vit, tiny_lm with build_net
from lab.nets.specs import DIFFUSION_TYPES, check_net_spec  # noqa: E402


def spec_for(shape, spec: dict | None = None, **overrides) -> dict:
    """A network spec for samples of ``shape``, built from ``spec`` with ``overrides`` (n_classes, extra, ...)."""
    shape = tuple(int(s) for s in shape)
    spec = dict(spec or {})
    kind = spec.get("type", "mlp")
    if len(shape) == 1:
        if kind == "unet":
            raise LabError(f"a unet spec needs image data (C, H, W); this data has samples of shape {shape}")
        spec["dim"] = shape[0]
    elif len(shape) == 3:
        if kind != "unet":
            spec = default_unet_spec(shape)
        spec.update(channels=shape[0], size=shape[1])
    else:
        raise LabError(f"no network for samples of shape {shape}; allowed: (D,) points or (C, H, W) images")
    spec.update(overrides)
    return spec


def widen(net, extra: list[str]):
    """A copy of ``net`` that also takes the scalar conditions ``extra`` and, at initialisation, ignores them.

    MLP: the new inputs come last in the first layer, whose new columns are zero. UNet: each new
    condition has its own embedding added to the time embedding; its last layer is zeroed. Either
    way the widened net computes exactly what ``net`` computes until training moves it.
    """
    import copy

    import torch  # inside: local to widen (torch is loaded by lab anyway)

    spec = net_spec(net)
    old = list(spec.get("extra", []))
    new = [k for k in extra if k not in old]
    if not new:
        return copy.deepcopy(net)
    spec["extra"] = old + new
    wide = build_net(spec)
    src, dst = net.state_dict(), wide.state_dict()
    for k, v in src.items():
        if dst[k].shape == v.shape:
            dst[k] = v.clone()
        else:  # MLP first layer: the teacher's inputs first, the new inputs' columns last (zero)
            w = torch.zeros_like(dst[k])
            w[:, : v.shape[1]] = v
            dst[k] = w
    if spec.get("type") == "unet":
        for k in new:
            dst[f"extra_emb.{k}.3.weight"].zero_()
            dst[f"extra_emb.{k}.3.bias"].zero_()
    wide.load_state_dict(dst)
    return wide


def jvp(fn, primals: tuple, tangents: tuple, double_backward: bool = False):
    """(fn(*primals), d fn . tangents).

    Forward-mode AD (``torch.func.jvp``) by default. ``double_backward=True`` computes the same
    product by the double-vjp trick (``torch.autograd.functional.jvp``: two backward passes): the
    way for diffusers UNets, whose group norm has no working forward-mode rule on CPU (torch 2.13)
    and whose fused attention kernels have none at all. Attention runs on its math kernel either way.
    """
    import torch  # inside: local to jvp (torch is loaded by lab anyway)
    from torch.nn.attention import SDPBackend, sdpa_kernel  # inside: attention kernels only needed for jvp

    with sdpa_kernel(SDPBackend.MATH):
        if double_backward:
            out, tan = torch.autograd.functional.jvp(fn, tuple(primals), tuple(tangents))
            return out.detach(), tan.detach()
        return torch.func.jvp(fn, primals, tangents)


def sample_shape(net) -> tuple:
    """The shape of one sample a network takes ((2,) when it does not say)."""
    return tuple(getattr(net, "sample_shape", None) or (getattr(net, "dim", 2),))


__all__ = ["TimeMLP", "UNet", "build_net", "net_spec", "check_net_spec", "DIFFUSION_TYPES", "spec_for", "default_unet_spec", "sample_shape", "widen", "jvp"]
