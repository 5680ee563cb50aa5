"""``NETS``: network type name -> constructor, the table ``build_net(spec)`` reads.

It sits below every network module so each one registers its own types when imported
(``lab.nets`` imports them all: mlp, unet, diffusers_unet, the classifiers; the analytic
posteriors and some methods add theirs), and nothing here imports a network module.
"""
from __future__ import annotations

from typing import Callable

NETS: dict[str, Callable] = {}

__all__ = ["NETS"]
