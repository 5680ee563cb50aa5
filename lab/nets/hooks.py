"""Read intermediate features by layer name with forward hooks, without changing the model.

    with FeatureTap(net, ["fc1", "head"]) as tap:
        logits = net(x)
    h = tap["fc1"]

Each named submodule (``net.get_submodule(name)``) gets a forward hook that records its output
(the last call's, if it runs more than once per forward), or with ``inputs=True`` its first
positional input (what a ``head`` is fed); the hook returns nothing, so the network's outputs are
unchanged. ``detach=True`` stores detached tensors (for probes); the default keeps the graph
(feature losses such as FitNets back-propagate through it). All hooks are removed on exit, even
when the body raises.

This is the one way features are read in the lab: :func:`tap_features` (one forward pass and its
features) is what the KD feature methods (``lab.kd.feature.base.run_with_features``), the KD probes
(``lab.probes.kd.features``) and DisWOT (``lab.kd.diswot``) use.
"""
from __future__ import annotations

import torch
from torch import nn

from lab.errors import LabError


def layer_names(net: nn.Module) -> list[str]:
    """The tap-able layer names of ``net``: its ``feature_layers`` if it lists them, else all named submodules."""
    listed = getattr(net, "feature_layers", None)
    if listed:
        return list(listed)
    return [name for name, _ in net.named_modules() if name]


def _detach(out):
    if isinstance(out, torch.Tensor):
        return out.detach()
    if isinstance(out, (tuple, list)):
        return type(out)(_detach(o) for o in out)
    if isinstance(out, dict):
        return {k: _detach(v) for k, v in out.items()}
    return out


class FeatureTap:
    """A context manager recording the outputs of ``net``'s named submodules ``layers``.

    Any submodule path accepted by ``net.get_submodule`` works (``"block1.attn"`` too), not only
    ``net.feature_layers``. ``tap[name]`` is the recorded output (with ``inputs=True``: the first positional
    input), ``tap.features`` the dict.
    """

    def __init__(self, net: nn.Module, layers, detach: bool = False, inputs: bool = False):
        if isinstance(layers, str):
            layers = [layers]
        self.net, self.layers, self.detach, self.inputs = net, list(layers), bool(detach), bool(inputs)
        if not self.layers:
            raise LabError(f"give at least one layer name; available: {', '.join(layer_names(net))}")
        self.modules: dict[str, nn.Module] = {}
        for name in self.layers:
            try:
                self.modules[name] = net.get_submodule(name)
            except AttributeError:
                raise LabError(f"unknown layer {name!r} in {type(net).__name__}; "
                               f"available: {', '.join(layer_names(net))}") from None
        self.features: dict = {}
        self._handles: list = []

    def _hook(self, name):
        def hook(module, args, output):
            value = args[0] if self.inputs else output
            self.features[name] = _detach(value) if self.detach else value

        return hook

    def __enter__(self) -> "FeatureTap":
        if self._handles:
            raise LabError("this FeatureTap is already active; it cannot be entered twice at once")
        self.features = {}
        self._handles = [m.register_forward_hook(self._hook(name)) for name, m in self.modules.items()]
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove the hooks (done on exit; safe to call twice)."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def clear(self) -> None:
        self.features = {}

    def __getitem__(self, name: str):
        if name not in self.modules:
            raise LabError(f"layer {name!r} is not tapped; tapped: {', '.join(self.layers)}")
        if name not in self.features:
            raise LabError(f"layer {name!r} has not run yet: call the network inside the `with FeatureTap(...)` block")
        return self.features[name]

    def __contains__(self, name: str) -> bool:
        return name in self.features

    def keys(self):
        return list(self.features)


def tap_features(net: nn.Module, x, layers, detach: bool = True, inputs: bool = False, **kwargs) -> tuple:
    """(net(x, **kwargs), {layer: output (``inputs=True``: input)}) in one call."""
    with FeatureTap(net, layers, detach=detach, inputs=inputs) as tap:
        out = net(x, **kwargs)
    return out, {name: tap[name] for name in tap.layers}


__all__ = ["FeatureTap", "tap_features", "layer_names"]
