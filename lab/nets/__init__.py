"""Network builders. Every net is built from a JSON-serialisable spec: ``build_net(spec)``.

The network is chosen by the data, not by the method: ``spec_for(shape, spec)`` turns a
method's ``student_net`` (an MLP spec by default) into an MLP over points of shape (D,)
or, for images (C, H, W), into the data's default diffusers UNet unless the spec
already is a ``unet`` spec.
"""
from lab.errors import LabError
from lab.nets.mlp import TimeMLP, build_net, net_spec
from lab.nets.unet import UNet, default_unet_spec


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


def sample_shape(net) -> tuple:
    """The shape of one sample a network takes ((2,) when it does not say)."""
    return tuple(getattr(net, "sample_shape", None) or (getattr(net, "dim", 2),))


__all__ = ["TimeMLP", "UNet", "build_net", "net_spec", "spec_for", "default_unet_spec", "sample_shape"]
