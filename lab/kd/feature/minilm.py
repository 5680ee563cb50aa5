"""MiniLM: deep self-attention distillation of the last transformer layer (language task).

Paper: Wang et al., "MiniLM: Deep Self-Attention Distillation for Task-Agnostic Compression of
Pre-Trained Transformers" (NeurIPS 2020). The student mimics the teacher's LAST layer's
self-attention module only, with two terms, both averaged over heads and query positions:

- attention transfer: KL(A_T || A_S), A = softmax(q k^T / sqrt(d_k)) per head (the attention
  distributions the tiny LM returns with ``return_attention=True``);
- value relation: KL(VR_T || VR_S), VR = softmax(V V^T / sqrt(d_k)) per head.

Both are (heads, L, L) distributions whatever the hidden sizes, so the student can be much narrower
than the teacher (dim 8 vs 64 here), but the head counts must match (refused otherwise).

Fidelity notes:
- MiniLM is task-agnostic pre-training distillation with no logit term; our student must also
  predict tokens, so the loss adds the next-token cross-entropy (``ce_weight``, default 1) and
  optionally Hinton KD (``kd_weight``, default 0):
  ``ce_weight * CE + kd_weight * T^2 KL + attn_weight * AT + value_weight * VR``.
- the models are causal: the attention distributions are already masked; the value relation is
  masked the same way (position i relates to values j <= i), whereas the paper's BERT is bidirectional.
- measured (language task, student TinyLM dim 8 depth 1, 400 steps, batch 32, seeds 0-1, mean
  KL(true next-token law || student) on the test sequences, lower is better): scratch 0.200±0.002,
  minilm 0.172±0.010: mimicking the teacher's last-layer attention and value relations helps.
- no teacher assistant (the paper's optional intermediate-size teacher).
- the attention and the values are what the tiny LM returns with ``return_attention=True`` (no forward hooks), so
  it is a plain :class:`~lab.kd.base.KDMethod`, not a :class:`~lab.kd.feature.base.FeatureKD`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lab.config import param
from lab.errors import LabError
from lab.kd.base import KDConfig, KDMethod, register


def attention_kl(a_t: torch.Tensor, a_s: torch.Tensor) -> torch.Tensor:
    """KL(A_T || A_S) between attention probabilities (n, heads, q, k), summed over keys, averaged over
    examples, heads and queries; keys the teacher gives probability 0 (masked) contribute 0."""
    if a_t.shape != a_s.shape:
        raise LabError(f"attention shapes differ: teacher {tuple(a_t.shape)}, student {tuple(a_s.shape)}")
    pos = a_t > 0
    terms = torch.where(pos, a_t * (torch.log(a_t.clamp_min(1e-30)) - torch.log(a_s.clamp_min(1e-30))),
                        torch.zeros_like(a_t))
    return terms.sum(-1).mean()


def value_relation_log(v: torch.Tensor, causal: bool = True) -> torch.Tensor:
    """log softmax(V V^T / sqrt(d_k)) per head, for values (n, heads, L, d_k); causal masks j > i."""
    scores = v @ v.transpose(-2, -1) / math.sqrt(v.shape[-1])
    if causal:
        L = v.shape[-2]
        mask = torch.ones(L, L, dtype=torch.bool, device=v.device).triu(1)
        scores = scores.masked_fill(mask, float("-inf"))
    return F.log_softmax(scores, -1)


def value_relation_kl(v_t: torch.Tensor, v_s: torch.Tensor, causal: bool = True) -> torch.Tensor:
    """KL(VR_T || VR_S) summed over keys, averaged over examples, heads and queries (head dims may differ)."""
    if v_t.shape[:-1] != v_s.shape[:-1]:
        raise LabError(f"value shapes differ beyond the head dim: teacher {tuple(v_t.shape)}, student "
                       f"{tuple(v_s.shape)}")
    lt, ls = value_relation_log(v_t, causal), value_relation_log(v_s, causal)
    keep = torch.isfinite(lt)  # the masked (future) keys have probability 0 in both
    lt, ls = lt.masked_fill(~keep, 0.0), ls.masked_fill(~keep, 0.0)
    return (keep * lt.exp() * (lt - ls)).sum(-1).mean()


@dataclass
class MiniLMConfig(KDConfig):
    ce_weight: float = 1.0
    kd_weight: float = 0.0
    #: weight of the last-layer attention KL
    attn_weight: float = param(1.0, ge=0)
    #: weight of the last-layer value-relation KL
    value_weight: float = param(1.0, ge=0)


@register("minilm")
class MiniLM(KDMethod):
    Config = MiniLMConfig
    paper = "Wang et al. 2020, MiniLM: Deep Self-Attention Distillation for Task-Agnostic Compression"
    mechanism = ("KL between the last layer's self-attention distributions and value relations softmax(VV^T/sqrt d) "
                 "of teacher and student, plus next-token CE")
    kinds = ("lm",)
    kinds_note = "it distils transformer self-attention (TinyLM)"
    tiny = {"steps": 4, "batch": 8}
    tiny_task = "language"
    bench_task = "language"
    bench_config = {"steps": 400, "batch": 32}

    def setup(self):
        hs, ht = getattr(self.student, "heads", None), getattr(self.teacher, "heads", None)
        if hs is None or ht is None:
            raise LabError(f"minilm needs transformer student and teacher (tiny_lm), got "
                           f"{type(self.student).__name__} and {type(self.teacher).__name__}")
        if hs != ht:
            raise LabError(f"minilm needs as many attention heads in the student as in the teacher, got student "
                           f"heads={hs}, teacher heads={ht}; allowed: student heads={ht}")

    def compute(self, batch, it):
        c, x, y = self.config, batch["x"], batch["y"]
        with torch.no_grad():
            teacher_logits, t_att, t_val = self.teacher(x, return_attention=True)
        student_logits, s_att, s_val = self.student(x, return_attention=True)
        at = attention_kl(t_att[-1], s_att[-1])
        vr = value_relation_kl(t_val[-1], s_val[-1])
        ce = self.ce(student_logits, y)
        loss = c.ce_weight * ce + c.attn_weight * at + c.value_weight * vr
        return self.plus_kd(loss, {"ce": ce, "attn": at, "value": vr}, student_logits, teacher_logits)


__all__ = ["MiniLM", "attention_kl", "value_relation_kl", "value_relation_log"]
