"""Speculative decoding and online speculative decoding (OSD) on the synthetic language.

Papers: Leviathan, Kalman, Matias, "Fast Inference from Transformers via Speculative Decoding" (ICML 2023) and
Chen et al., "Accelerating Large Language Model Decoding with Speculative Sampling" (2023) for the accept/reject
rule; Liu, Hu, Bailis, Cheung, Deng, Stoica, Zhang, "Online Speculative Decoding" (ICML 2024, arXiv 2310.07177;
official code LiuXiaoxuanPKU/OSD, ``distill/specInfer/generator.py`` and ``distill/distill_trainer.py``) for the
online distillation of the draft on the query stream.

Speculative decoding (:func:`speculative_generate`): a small draft model q proposes ``k`` tokens one after the
other; ONE call of the target model p scores all of them; draft token x_j is accepted with probability
min(1, p_j(x_j) / q_j(x_j)); at the first rejection a token is drawn from norm(max(0, p_j - q_j)) and the round
stops; if all k are accepted a bonus token is drawn from p_{k+1}. Each round emits between 1 and k + 1 tokens per
target call and the emitted tokens follow the target's distribution exactly (checked by a chi-square test in
tests/test_lm_family.py, which plain draft sampling fails). The acceptance rate of a position is
α = Σ_x min(p(x), q(x)) = 1 - TV(p, q) (exact, not estimated from the accept coin).

Online speculative decoding (:func:`osd_stream`, entry point; ``OSDConfig``): the requests of a query stream are
served in groups of ``update_every`` (one batched speculative decoding call per group); after each group the
draft takes ``update_steps`` optimiser steps on the group's sequences with a divergence between the target's
and the draft's next-token distributions over the generated positions: forward KL (OSD's online loss), reverse
KL, JSD (GKD's generalised JSD with beta) or TAID (the interpolated target softmax((1 - t) sg(z_q) + t z_p) with
t rising linearly from ``taid_t_start`` to 1 over the stream). A ``frozen`` run serves the same stream with
no updates. Recorded per group: α (mean Σ min(p, q) over the positions examined), mean accepted length, tokens
per target call, and, every ``eval_every`` groups, α on fixed held-out sequences of each prompt source.

The query stream (:func:`shift_stream`): two synthetic languages A and B (:class:`SyntheticLanguage` with the
same vocabulary and different seeds). Request i's prompt (``prompt_len`` ids, BOS first) comes from B with
probability s(i): s = 0 for the first quarter of the stream, rising linearly to 1 over the middle half, 1 for
the last quarter (a drift like the paper's ``data/prepare_online.py`` mixtures, with flat ends for before/after
measurements). The target is a TinyLM trained on both languages; the draft is a smaller TinyLM distilled from
the target on A prompts only, so the shift to B is a shift the draft has not seen. Both are trained in seconds
and shipped in ``assets/zoo/kd/lm_family/osd`` (else cached; :func:`osd_models`).

OSD is not registered as a KD method: it does not fit the KDMethod contract honestly (it distils on a query
stream served by speculative decoding, with a target network, not a KD task's training split and teacher),
so it is this module's entry point :func:`osd_stream` (and the ``osd`` key of :data:`ENTRY_POINTS`).

Fidelity notes:
- toy scale: target TinyLM dim 32 / depth 2, draft dim 8 / depth 1, vocabulary 16 (+ BOS), prompts of 4 ids,
  16 new tokens per request, k = 4 drafts per round, an update every 8 requests (OSD's ``online_update_interval``),
  lr 3e-3 with Adam (OSD: 1e-4 on a 160M draft). Requests are served in batches of ``update_every`` with the same
  draft, which is what serving them one by one between two updates would give.
- both models are sampled at temperature 1 (OSD samples at 0.01, near greedy) and the BOS id is removed from
  both distributions (renormalised) before drafting and verifying: the "target distribution" that the
  exactness test checks is the target's softmax without BOS.
- the loss is averaged over ALL generated positions of the buffered requests (target logits are recomputed on
  the buffer), not only over the positions after a rejection (OSD stores the positions of the target-sampled
  tokens); with sampling at temperature 1 nearly every round has a target-sampled token, and the extra
  positions only add signal.
- OSD's online mode always uses forward KL; reverse KL, JSD and TAID are offered as in its offline baselines
  (its "jsd" is 0.9 KL(p||q) + 0.1 KL(q||p); ours is GKD's generalised JSD with beta 0.5).
- α is Σ min(p, q) at each examined position (up to and including the first rejection), the exact acceptance
  probability (the OSD repo logs min(p(x̂), q(x̂)) of near-greedy drafts, which approximates it).
- measured (bench/lm.py, 512 requests, seeds 0-2): before the shift α ≈ 0.84 and 3.2 tokens per target call for
  every draft; in the last quarter (all B) the frozen draft falls to α 0.42 (1.65 tokens per call) while the online
  drafts stay at 0.74-0.76 (2.8 tokens per call): forward KL 0.752, reverse KL 0.738, JSD 0.757, TAID 0.763; held-out
  α on B rises from 0.40 to 0.77-0.80. The differences between the divergences are within about two stds; the
  online-vs-frozen gap (0.3) is the result. Online updates also cost some acceptance on A (held-out α on A falls
  as the draft follows B: 0.885 → 0.66-0.68 at seed 0), as expected of a small draft that tracks the current stream.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from lab.config import Config, config_from_dict, param
from lab.data.language import SyntheticLanguage
from lab.errors import LabError
from lab.kd.logit.gkd import cached_lm_nets, divergence_rows
from lab.kd.logit.taid import interpolate
from lab.kd.tasks import logits_of
from lab.nets.classifiers import TinyLM
from lab.trainable import resolve_device

OSD_DIVERGENCES = ("forward_kl", "reverse_kl", "jsd", "taid")


# ----------------------------------------------------------------------------- the accept/reject rule
def _probs(net, seq: torch.Tensor, forbid: int | None) -> torch.Tensor:
    z = logits_of(net(seq)).float()
    if forbid is not None:
        z[..., forbid] = -float("inf")
    return torch.softmax(z, -1)


def accept_reject(p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor, p_bonus: torch.Tensor,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The speculative-sampling rule on a batch of rounds.

    ``p``, ``q`` (n, k, V): target and draft distributions at the k drafted positions; ``drafts`` (n, k): the
    tokens drawn from q; ``p_bonus`` (n, V): the target's distribution after the k-th draft. Returns
    ``(n_accepted (n,), next_token (n,))``: the number of leading accepted drafts and the token emitted after
    them (the residual resample at the first rejection, or the bonus token). CPU generator for all draws."""
    n, k, V = p.shape
    pd_ = p.gather(2, drafts[..., None])[..., 0]
    qd = q.gather(2, drafts[..., None])[..., 0]
    u = torch.rand(n, k, generator=generator).to(p.device)
    ok = u < torch.clamp(pd_ / qd.clamp_min(1e-30), max=1.0)
    n_acc = torch.cumprod(ok.long(), 1).sum(1)
    idx = n_acc.clamp(max=k - 1)
    rows = torch.arange(n, device=p.device)
    resid = (p[rows, idx] - q[rows, idx]).clamp_min(0)
    empty = resid.sum(-1, keepdim=True) <= 0
    resid = torch.where(empty, p[rows, idx], resid)  # p == q exactly: the rejection has probability 0
    dist = torch.where((n_acc == k)[:, None], p_bonus, resid)
    dist = dist / dist.sum(-1, keepdim=True)
    nxt = torch.multinomial(dist.cpu().double(), 1, generator=generator)[:, 0].to(p.device)
    return n_acc, nxt


@torch.no_grad()
def speculative_generate(target, draft, prompts: torch.Tensor, max_new: int, k: int, generator: torch.Generator,
                         forbid: int | None = None) -> tuple[torch.Tensor, dict]:
    """Speculative decoding of ``max_new`` tokens after each prompt (n, P), ``k`` drafts per round.

    Returns ``(tokens (n, P + max_new), stats)``; stats: ``rounds`` (n,) target calls per row, ``accepted``
    (list of (n,) accepted drafts per round, -1 for finished rows), ``alpha_sum`` / ``alpha_count`` (n,) sums
    of Σ min(p, q) over the examined positions, ``p_at`` / ``q_at``: the target's and draft's distributions at
    the first generated position (n, V). Rows run independently (right-padded buffer; the models are causal)."""
    if k < 1 or max_new < 1:
        raise LabError(f"k and max_new must be >= 1, got k={k}, max_new={max_new}")
    n, P = prompts.shape
    total = P + max_new
    W = total + k + 1
    limit = min(getattr(target, "seq_len", W), getattr(draft, "seq_len", W))
    if total + k > limit:
        raise LabError(f"prompt {P} + max_new {max_new} + k {k} = {total + k} exceeds the models' window {limit}; "
                       f"allowed: prompt_len + max_new + k <= {limit}")
    dev = prompts.device
    buf = torch.zeros(n, W, dtype=torch.long, device=dev)
    buf[:, :P] = prompts
    cur = torch.full((n,), P, dtype=torch.long, device=dev)
    rows = torch.arange(n, device=dev)
    stats = {"rounds": torch.zeros(n, dtype=torch.long), "accepted": [], "alpha_sum": torch.zeros(n, dtype=torch.float64),
             "alpha_count": torch.zeros(n, dtype=torch.long)}
    width = total + k
    first = True
    while bool((cur < total).any()):
        active = cur < total
        q_list, d_list = [], []
        for j in range(k):
            qj = _probs(draft, buf[:, :width], forbid)[rows, (cur + j - 1).clamp(max=width - 1)]
            tok = torch.multinomial(qj.cpu(), 1, generator=generator)[:, 0].to(dev)
            buf[rows, (cur + j).clamp(max=W - 1)] = torch.where(active, tok, buf[rows, (cur + j).clamp(max=W - 1)])
            q_list.append(qj)
            d_list.append(tok)
        pall = _probs(target, buf[:, :width], forbid)
        pos = (cur[:, None] - 1 + torch.arange(k + 1, device=dev)[None]).clamp(max=width - 1)
        pk = pall[rows[:, None], pos]  # (n, k + 1, V)
        q = torch.stack(q_list, 1)
        drafts = torch.stack(d_list, 1)
        n_acc, nxt = accept_reject(pk[:, :k], q, drafts, pk[:, k], generator)
        if first:
            stats["p_at"], stats["q_at"] = pk[:, 0].cpu(), q[:, 0].cpu()
            first = False
        a = torch.minimum(pk[:, :k], q).sum(-1).double().cpu()  # (n, k) exact acceptance probabilities
        examined = (torch.arange(k)[None] <= n_acc.cpu()[:, None]) & active.cpu()[:, None]
        stats["alpha_sum"] += (a * examined).sum(1)
        stats["alpha_count"] += examined.sum(1)
        buf[rows, (cur + n_acc).clamp(max=W - 1)] = torch.where(active, nxt, buf[rows, (cur + n_acc).clamp(max=W - 1)])
        stats["rounds"] += active.cpu().long()
        stats["accepted"].append(torch.where(active, n_acc, torch.full_like(n_acc, -1)).cpu())
        cur = torch.where(active, cur + n_acc + 1, cur)
    return buf[:, :total], stats


def round_summary(stats: dict, max_new: int) -> dict:
    """Mean α (Σ min(p, q) over the examined positions), mean accepted drafts per round, tokens per target call."""
    acc = torch.stack(stats["accepted"]) if stats["accepted"] else torch.zeros(1, 1)
    valid = acc >= 0
    return {"alpha": float(stats["alpha_sum"].sum() / stats["alpha_count"].sum().clamp(min=1)),
            "accepted_len": float(acc[valid].float().mean()) if valid.any() else 0.0,
            "tokens_per_call": float(max_new / stats["rounds"].double().mean())}


def expected_tokens_per_call(alpha: float, k: int) -> float:
    """(1 - α^(k+1)) / (1 - α): the expected tokens per target call with independent acceptances at rate α
    (Leviathan et al. 2023)."""
    if not 0 <= alpha <= 1:
        raise LabError(f"alpha must be in [0, 1], got {alpha}")
    return float(k + 1) if alpha >= 1 else float((1 - alpha ** (k + 1)) / (1 - alpha))


@torch.no_grad()
def acceptance_on(target, draft, seqs: torch.Tensor, start: int, forbid: int | None = None) -> float:
    """Mean exact acceptance rate Σ min(p, q) of ``draft`` against ``target`` on fixed sequences (n, L), over the
    positions from ``start`` (logit rows ``start - 1 .. L - 2``)."""
    p = _probs(target.eval(), seqs[:, :-1], forbid)[:, start - 1:]
    q = _probs(draft.eval(), seqs[:, :-1], forbid)[:, start - 1:]
    return float(torch.minimum(p, q).sum(-1).mean())


# ----------------------------------------------------------------------------- the stream
def shift_stream(n: int, seed: int = 0) -> np.ndarray:
    """Source of each of ``n`` requests (0: language A, 1: language B): B's share is 0 for the first quarter,
    rises linearly to 1 over the middle half and is 1 for the last quarter; seeded."""
    if n < 4:
        raise LabError(f"the stream needs at least 4 requests, got {n}")
    i = np.arange(n)
    share = np.clip((i - n / 4) / (n / 2), 0.0, 1.0)
    rng = np.random.default_rng([seed, 23])
    return (rng.random(n) < share).astype(np.int64)


def shift_share(n: int) -> np.ndarray:
    """B's share of the stream at each request (the probability :func:`shift_stream` draws from)."""
    i = np.arange(n)
    return np.clip((i - n / 4) / (n / 2), 0.0, 1.0)


@dataclass
class OSDConfig(Config):
    #: requests in the stream
    requests: int = param(512, ge=16)
    #: serve this many requests with the same draft, then update it (OSD: 8)
    update_every: int = param(8, ge=1)
    #: optimiser steps per update
    update_steps: int = param(2, ge=0)
    lr: float = param(3e-3, gt=0)
    #: the divergence the draft is distilled with
    divergence: str = param("forward_kl", choices=OSD_DIVERGENCES)
    #: GKD's JSD mixture weight (divergence "jsd")
    beta: float = param(0.5, ge=0, le=1)
    #: TAID's interpolation t at the first update (rises linearly to 1 over the stream)
    taid_t_start: float = param(0.4, ge=0, le=1)
    #: drafts per round
    k: int = param(4, ge=1, le=16)
    prompt_len: int = param(4, ge=1)
    max_new: int = param(16, ge=1)
    #: every this many updates, α on fixed held-out sequences of A and of B
    eval_every: int = param(8, ge=1)
    #: False: serve the stream with the draft frozen (the baseline)
    online: bool = param(True)


#: the two synthetic languages of the stream and the model shapes
LANG_A = {"vocab": 16, "n_states": 8, "seq_len": 32, "seed": 0}
LANG_B = {"vocab": 16, "n_states": 8, "seq_len": 32, "seed": 5}
TARGET_SPEC = {"vocab": 17, "dim": 32, "depth": 2, "heads": 2, "seq_len": 31}
DRAFT_SPEC = {"vocab": 17, "dim": 8, "depth": 1, "heads": 2, "seq_len": 31}
MODEL_RECIPE = {"target_steps": 600, "draft_steps": 300, "batch": 64, "lr": 3e-3, "seed": 0}


def languages() -> tuple[SyntheticLanguage, SyntheticLanguage]:
    """The stream's languages A (where the draft was distilled) and B (where the stream shifts)."""
    return SyntheticLanguage(**LANG_A), SyntheticLanguage(**LANG_B)


def _train_models(progress: bool = False):
    r = MODEL_RECIPE
    A, B = languages()
    torch.manual_seed(r["seed"])
    target, draft = TinyLM(**TARGET_SPEC), TinyLM(**DRAFT_SPEC)
    g = torch.Generator().manual_seed(r["seed"])
    data = torch.cat([A.sample(4096, seed=11)[:, :31], B.sample(4096, seed=12)[:, :31]])
    opt = torch.optim.Adam(target.parameters(), lr=r["lr"])
    it = range(r["target_steps"])
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, desc="target LM")
    for _ in it:
        x = data[torch.randint(0, len(data), (r["batch"],), generator=g)]
        z = target(x[:, :-1])
        loss = F.cross_entropy(z.reshape(-1, z.shape[-1]), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    target.eval()
    a_only = A.sample(4096, seed=13)[:, :31]
    opt = torch.optim.Adam(draft.parameters(), lr=r["lr"])
    it = range(r["draft_steps"])
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, desc="draft LM (A only)")
    for _ in it:
        x = a_only[torch.randint(0, len(a_only), (r["batch"],), generator=g)]
        with torch.no_grad():
            zt = target(x)
        zs = draft(x)
        loss = divergence_rows("forward_kl", zs.reshape(-1, zs.shape[-1]), zt.reshape(-1, zt.shape[-1])).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return target.eval(), draft.eval()


def osd_models(device=None, progress: bool = False) -> tuple[TinyLM, TinyLM]:
    """(target, draft) of the stream, trained from :data:`MODEL_RECIPE` (about 15 s) or loaded: shipped in
    ``assets/zoo/kd/lm_family/osd``, else cached under ``lab.io.cache_root()`` (see
    :func:`lab.kd.logit.gkd.cached_lm_nets`); fresh copies on ``device``."""
    recipe = {"lang_a": LANG_A, "lang_b": LANG_B, "target": TARGET_SPEC, "draft": DRAFT_SPEC, "recipe": MODEL_RECIPE}
    nets = cached_lm_nets("osd", recipe, lambda: {"target": TinyLM(**TARGET_SPEC), "draft": TinyLM(**DRAFT_SPEC)},
                          lambda prog: dict(zip(("target", "draft"), _train_models(prog))), device, progress)
    return nets["target"], nets["draft"]


def _draft_loss(cfg: OSDConfig, zq: torch.Tensor, zp: torch.Tensor, t_interp: float) -> torch.Tensor:
    if cfg.divergence == "taid":
        pt = interpolate(zq, zp, t_interp)
        return -(pt * torch.log_softmax(zq.float(), -1)).sum(-1).mean()
    return divergence_rows(cfg.divergence, zq, zp, beta=cfg.beta).mean()


def osd_stream(config: "OSDConfig | dict | None" = None, seed: int = 0, device=None, models=None,
               progress: bool = False) -> dict:
    """Serve a shifting query stream with speculative decoding, distilling the draft online (OSD) or not.

    Returns ``{"groups": DataFrame, "evals": DataFrame, "dist": DataFrame, "config": dict, "wall_s": float}``:
    ``groups`` one row per group of ``update_every`` requests (request index, B's share, α, accepted length,
    tokens per target call, the update's loss), ``evals`` α on fixed held-out A and B sequences every
    ``eval_every`` updates (update 0 = before any), ``dist`` the target's and the draft's next-token
    distributions at the first generated position of a fixed B prompt, before and after the stream."""
    cfg = config if isinstance(config, OSDConfig) else config_from_dict(OSDConfig, config)
    if cfg.prompt_len + cfg.max_new + cfg.k > TARGET_SPEC["seq_len"]:
        raise LabError(f"prompt_len + max_new + k = {cfg.prompt_len + cfg.max_new + cfg.k}; allowed: <= "
                       f"{TARGET_SPEC['seq_len']} (the models' window)")
    dev = resolve_device(device)
    target, draft = models if models is not None else osd_models(dev)
    draft = TinyLM(**DRAFT_SPEC).to(dev).eval() if draft is None else _copy(draft, dev)
    target = target.to(dev).eval()
    for p_ in target.parameters():
        p_.requires_grad_(False)
    A, B = languages()
    bos = A.bos
    src = shift_stream(cfg.requests, seed)
    pa = A.sample(cfg.requests, seed=1000 + seed)[:, :cfg.prompt_len]
    pb = B.sample(cfg.requests, seed=2000 + seed)[:, :cfg.prompt_len]
    prompts = torch.where(torch.from_numpy(src)[:, None].bool(), pb, pa).to(dev)
    held = {"A": A.sample(128, seed=77)[:, :cfg.prompt_len + cfg.max_new + 1].to(dev),
            "B": B.sample(128, seed=78)[:, :cfg.prompt_len + cfg.max_new + 1].to(dev)}
    probe = pb[:1].to(dev)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(draft.parameters(), lr=cfg.lr)
    n_groups = (cfg.requests + cfg.update_every - 1) // cfg.update_every
    groups, evals, dist = [], [], []

    def snapshot(update):
        for name, seqs in held.items():
            evals.append({"update": update, "requests_seen": min(update * cfg.update_every, cfg.requests),
                          "source": name, "alpha": acceptance_on(target, draft, seqs, cfg.prompt_len, bos)})

    def probe_dist(when):
        with torch.no_grad():
            p = _probs(target, probe, bos)[0, -1].cpu().numpy()
            q = _probs(draft.eval(), probe, bos)[0, -1].cpu().numpy()
        for tok in range(A.vocab):
            dist.append({"when": when, "token": tok, "target": float(p[tok]), "draft": float(q[tok])})

    snapshot(0)
    probe_dist("before")
    t0 = time.perf_counter()
    it = range(n_groups)
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, desc="OSD stream" if cfg.online else "frozen stream")
    for gi in it:
        lo, hi = gi * cfg.update_every, min(cfg.requests, (gi + 1) * cfg.update_every)
        draft.eval()
        seqs, st = speculative_generate(target, draft, prompts[lo:hi], cfg.max_new, cfg.k, g, forbid=bos)
        row = {"group": gi, "request": hi, "share_b": float(shift_share(cfg.requests)[lo:hi].mean()),
               "frac_b": float(src[lo:hi].mean()), **round_summary(st, cfg.max_new), "loss": float("nan")}
        if cfg.online and cfg.update_steps > 0:
            draft.train()
            x = seqs[:, :-1]
            with torch.no_grad():
                zp = logits_of(target(x))[:, cfg.prompt_len - 1:]
            t_interp = cfg.taid_t_start + (1 - cfg.taid_t_start) * (gi + 1) / n_groups
            for _ in range(cfg.update_steps):
                zq = logits_of(draft(x))[:, cfg.prompt_len - 1:]
                loss = _draft_loss(cfg, zq.reshape(-1, zq.shape[-1]), zp.reshape(-1, zp.shape[-1]), t_interp)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            row["loss"] = float(loss.detach())
            draft.eval()
            if (gi + 1) % cfg.eval_every == 0 or gi + 1 == n_groups:
                snapshot(gi + 1)
        groups.append(row)
    if not cfg.online:
        snapshot(n_groups)
    probe_dist("after")
    return {"groups": pd.DataFrame(groups), "evals": pd.DataFrame(evals), "dist": pd.DataFrame(dist),
            "config": asdict(cfg), "wall_s": time.perf_counter() - t0, "draft": draft}


def _copy(net: TinyLM, dev) -> TinyLM:
    spec = net.spec()
    spec.pop("type", None)
    out = TinyLM(**spec)
    out.load_state_dict(net.state_dict())
    return out.to(dev).eval()


#: the entry points of this module (OSD is not a KD method of the registry; see the module docstring)
ENTRY_POINTS = {"osd": osd_stream}

__all__ = ["accept_reject", "speculative_generate", "round_summary", "expected_tokens_per_call", "acceptance_on",
           "shift_stream", "shift_share", "OSDConfig", "OSD_DIVERGENCES", "languages", "osd_models", "osd_stream",
           "ENTRY_POINTS", "LANG_A", "LANG_B", "TARGET_SPEC", "DRAFT_SPEC", "MODEL_RECIPE"]
