"""KD networks on disk.

A saved classifier is a folder with ``model.json`` (``{"kind": "classifier", "net": spec, "card": {...}}``)
and ``weights.safetensors``, both written atomically. The KD teachers of the zoo (``kd/<task>/teacher``, shipped
in ``assets/zoo/kd``, else cached, else trained on the spot from the task's teacher recipe) belong to
:mod:`lab.zoo`, which finds, builds and resolves them; :func:`load_teacher` hands references to it.
"""
from __future__ import annotations

from pathlib import Path

from torch import nn

from lab.diffusion.generators import build_fitting, load_weights_into, one_line, read_model_json, read_weights
from lab.errors import LabError
from lab.io import atomic_write_json, save_tensors
from lab.nets.classifiers import CLASSIFIERS, build_classifier
from lab.nets.specs import check_net_spec, short_repr
from lab.trainable import resolve_reference


class KDModel:
    """A classifier or language model with its spec and card: ``save(folder, card)``, :func:`load_model`."""

    kind = "classifier"

    def __init__(self, net: nn.Module, card: dict | None = None):
        self.net, self.card = net, dict(card or {})

    def spec(self) -> dict:
        return {"kind": self.kind, "net": self.net.spec()}

    def save(self, folder, card: dict | None = None) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_tensors(folder / "weights.safetensors", dict(self.net.state_dict()))
        atomic_write_json(folder / "model.json", {**self.spec(), "card": {**self.card, **(card or {})}})
        return folder


def load_model(folder, device="cpu") -> nn.Module:
    """The network saved in ``folder`` (eval mode, on ``device``), with its card as ``net.card``.

    Validated on load: a missing folder, a missing, unparseable or non-object ``model.json``, a missing or
    bad ``net`` spec, a missing, truncated or ill-fitting ``weights.safetensors``, or either file reached
    through a symlink leading outside the folder, is one LabError line naming the file."""
    folder = Path(folder)
    if not (folder / "model.json").exists() and folder.is_dir():
        raise LabError(f"{folder} holds no saved model (no model.json)")
    meta = read_model_json(folder, "saved classifier folder")
    mj = folder / "model.json"
    if meta.get("kind") != "classifier":
        raise LabError(f"{folder} holds a {short_repr(meta.get('kind'))} model, not a classifier/language model")
    if "net" not in meta:
        raise LabError(f"{mj} lacks 'net' (the network spec)")
    try:
        check_net_spec(meta["net"], "net", CLASSIFIERS, None)
    except LabError as e:
        raise LabError(f"invalid {mj}: {e}") from None
    tensors, where = read_weights(folder), str(folder / "weights.safetensors")
    try:
        net = build_fitting(lambda: build_classifier(meta["net"]), tensors, where)
    except LabError as e:
        raise LabError(str(e) if str(e).startswith(where) else f"invalid {mj}: {e}") from None
    except (TypeError, ValueError, KeyError, RuntimeError) as e:
        raise LabError(f"invalid {mj}: the network cannot be built from its spec ({one_line(e)})") from None
    load_weights_into(net, tensors, where)
    net.card = meta.get("card", {})
    return net.to(device).eval()


def load_teacher(ref, device="cpu", train_if_missing: bool = True, progress: bool = True) -> nn.Module:
    """A teacher network from a KD zoo entry (``kd/digits/teacher``) or a saved model folder, resolved by
    :func:`lab.zoo.resolve` (through the hook lab.zoo installs: the zoo sits above KD); a network is returned as
    is (on ``device``, eval mode)."""
    if isinstance(ref, nn.Module):
        return ref.to(device).eval()
    return resolve_reference(ref, "kd", device, train_if_missing=train_if_missing, progress=progress).model


__all__ = ["KDModel", "load_model", "load_teacher"]
