"""Knowledge distillation of classifiers and language models, grouped by family (one package each).

    logit/     kd, scratch, rkl, jsd, skew_kl, tvd, dkd, bdkd, taid, function_matching, gkd: the student's logits
               are pulled to (a function of) the teacher's (gkd: on the student's own sampled sequences too)
    feature/   fitnets, at, vkd, rkd, minilm, ofa: intermediate features (hints, attention, embeddings,
               relations, per-stage logits) are matched too
    online/    dml, born_again: no pre-trained teacher; peers or earlier generations teach

Methods register by name (``lab.kd.list_methods()``); every module in these packages is imported here, so a new
method only needs its own file in its family's package with a ``@register("name")`` class. ``diswot`` (choosing a
student architecture without training) is a search tool, not a method. So are ``hacking`` (the teacher-hacking
study: oracle -> teacher -> student, offline against online data) and ``speculative`` (speculative decoding and
online speculative decoding, OSD: a draft distilled on a live query stream). Tasks: ``lab.kd.list_tasks()``.
"""
import importlib
import pkgutil

from lab.kd.base import KD_REGISTRY, KDConfig, KDMethod, KDTargets, get, list_methods, register
from lab.kd.tasks import KDTask, get_task, list_tasks
from lab.kd.zoo import KDModel, load_model, load_teacher

for _m in sorted(pkgutil.walk_packages(__path__, prefix=f"{__name__}."), key=lambda m: m.name):
    if not _m.name.rsplit(".", 1)[-1].startswith("_"):
        importlib.import_module(_m.name)

__all__ = ["KD_REGISTRY", "KDConfig", "KDMethod", "KDTargets", "get", "list_methods", "register", "KDTask",
           "get_task", "list_tasks", "KDModel", "load_model", "load_teacher"]
