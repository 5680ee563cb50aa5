"""Distillation methods, grouped by family (one package each), one module per method, registered by name.

    distribution_matching/   dmd, dmd2, sid, vsd, rcm, msd: a one-step generator moved by the difference of a
                             real (teacher) and a fake (fitted) score on its own samples
    consistency/             consistency, scm, tscd: the student maps any point of a teacher trajectory to its end
    flow_map/                shortcut, flowmap, boot: the student jumps from time t to any time s
    trajectory/              progressive, reflow, guidance: the student regresses the teacher's ODE solution
    adversarial/             add: a discriminator plus score distillation
    score_distillation/      sds, vsd_particles: samples (particles) optimised directly by a score

Every module in these packages is imported here, so a new method only needs its own file in its family's
package with a ``@register("name")`` class; nothing else has to be edited.
"""
import importlib
import pkgutil

from lab.methods.base import REGISTRY, Method, MethodConfig, Targets, get_method, list_methods, register

for _m in sorted(pkgutil.walk_packages(__path__, prefix=f"{__name__}."), key=lambda m: m.name):
    if _m.name != f"{__name__}.base" and not _m.name.rsplit(".", 1)[-1].startswith("_"):
        importlib.import_module(_m.name)

__all__ = ["REGISTRY", "Method", "MethodConfig", "Targets", "get_method", "list_methods", "register"]
