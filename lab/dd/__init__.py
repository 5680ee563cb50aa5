"""Dataset distillation on 8x8 digits: condense the training set into a few synthetic images per class.

    dc    gradient matching (Zhao, Mopuri & Bilen, ICLR 2021)
    dm    distribution matching of random-network embeddings (Zhao & Bilen, WACV 2023)
    mtt   matching training trajectories of experts (Cazenavette et al., CVPR 2022)
    ftd   flat trajectories: SAM-trained experts and an EMA of the images (Du et al., CVPR 2023)

Methods register by name (``lab.dd.list_methods()``); every module of this package is imported here. The base
class, the ConvNet, the augmentation and the evaluation protocol are in :mod:`lab.dd.base`; the expert
trajectories MTT and FTD match are in :mod:`lab.dd.experts`.
"""
import importlib
import pkgutil

from lab.dd.base import (DD_REGISTRY, ConvNet, DDConfig, DDMethod, DDResult, EvalProtocol, digits_data,
                         evaluate_set, full_data, get, list_methods, load_synset, random_real, register, train_net)

for _m in sorted(pkgutil.walk_packages(__path__, prefix=f"{__name__}."), key=lambda m: m.name):
    if not _m.name.rsplit(".", 1)[-1].startswith("_"):
        importlib.import_module(_m.name)

__all__ = ["DD_REGISTRY", "ConvNet", "DDConfig", "DDMethod", "DDResult", "EvalProtocol", "digits_data",
           "evaluate_set", "full_data", "get", "list_methods", "load_synset", "random_real", "register", "train_net"]
