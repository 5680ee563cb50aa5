"""A synthetic language with a KNOWN next-token distribution, for tiny language models.

:class:`SyntheticLanguage` is a random probabilistic automaton (a hidden Markov chain):
hidden state ``s`` emits token ``v`` with probability ``E[s, v]``, then moves to state
``s'`` with probability ``T[s, v, s']`` (the transition depends on the state AND the token it
emitted). Each state's emission distribution has 2 or 3 dominant tokens (a sparse Dirichlet
draw), so the true conditionals are multimodal; uncertainty about the hidden state mixes
the modes of several states.

Token ids: the real tokens are ``0 .. vocab-1``; every sequence starts with the BOS token
id ``vocab``, so a model's vocabulary is ``vocab + 1`` (``.model_vocab``). A sequence of
``seq_len`` ids holds BOS followed by ``seq_len - 1`` real tokens.

Because the automaton is known, ``p(x_{i+1} | x_{<=i})`` is computed exactly by the forward
algorithm (a belief over hidden states updated token by token), which gives the exact
per-token negative log-likelihood (the floor a model can reach) and the KL from the truth
to a model's predictions (:func:`kl_to_truth`).

Everything is seeded: parameters come from ``numpy.random.default_rng(seed)``, samples from
a CPU ``torch.Generator``; the same seeds give the same tokens on every device.
"""
from __future__ import annotations

import numpy as np
import torch

from lab.errors import LabError, check_int as _check_int


#: bounds, so a typo cannot allocate without limit (the transition table has n_states**2 * vocab entries)
MAX_VOCAB, MAX_STATES, MAX_SEQ_LEN, MAX_TABLE, MAX_TOKENS = 100_000, 4096, 100_000, 5 * 10**7, 10**8
MAX_SEED = 2**64 - 1


class SyntheticLanguage:
    """A random hidden-Markov language with exact next-token conditionals.

    Parameters: ``vocab`` real tokens (>= 4), ``n_states`` hidden states (>= 1), ``seq_len``
    ids per sequence including the leading BOS (>= 2), ``seed`` for the random automaton.
    Attributes: ``initial`` (S,), ``emission`` (S, V), ``transition`` (S, V, S) float64
    tensors; ``bos`` = ``vocab``; ``model_vocab`` = ``vocab + 1``.
    """

    def __init__(self, vocab: int = 16, n_states: int = 8, seq_len: int = 32, seed: int = 0):
        self.vocab = _check_int("vocab", vocab, 4, MAX_VOCAB)
        self.n_states = _check_int("n_states", n_states, 1, MAX_STATES)
        self.seq_len = _check_int("seq_len", seq_len, 2, MAX_SEQ_LEN)
        self.seed = _check_int("seed", seed, 0, MAX_SEED)
        if self.n_states**2 * self.vocab > MAX_TABLE:
            raise LabError(f"n_states**2 * vocab = {self.n_states**2 * self.vocab:_} transition entries is too many; "
                           f"allowed: <= {MAX_TABLE:_}")
        self.bos = self.vocab
        self.model_vocab = self.vocab + 1
        rng = np.random.default_rng([self.seed, 17])
        S, V = self.n_states, self.vocab
        emission = np.zeros((S, V))
        for s in range(S):
            k = int(rng.integers(2, 4))  # 2 or 3 dominant tokens
            dominant = rng.choice(V, size=k, replace=False)
            rest = np.setdiff1d(np.arange(V), dominant)
            emission[s, dominant] = 0.92 * rng.dirichlet(np.full(k, 4.0))
            emission[s, rest] = 0.08 * rng.dirichlet(np.full(len(rest), 0.5))
        transition = rng.dirichlet(np.full(S, 0.3), size=(S, V))
        initial = rng.dirichlet(np.full(S, 1.0))
        self.emission = torch.from_numpy(_floor(emission))
        self.transition = torch.from_numpy(_floor(transition))
        self.initial = torch.from_numpy(_floor(initial))

    def __repr__(self) -> str:
        return (f"SyntheticLanguage(vocab={self.vocab}, n_states={self.n_states}, seq_len={self.seq_len}, "
                f"seed={self.seed})")

    # -- sampling -------------------------------------------------------------------------
    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` sequences: a LongTensor (n, seq_len), column 0 is BOS (= ``vocab``)."""
        n = _check_int("n", n, 1, max(1, MAX_TOKENS // self.seq_len))
        seed = _check_int("seed", seed, 0, MAX_SEED)
        g = torch.Generator().manual_seed(seed)
        out = torch.empty(n, self.seq_len, dtype=torch.long)
        out[:, 0] = self.bos
        state = torch.multinomial(self.initial.expand(n, -1), 1, replacement=True, generator=g)[:, 0]
        for i in range(1, self.seq_len):
            tok = torch.multinomial(self.emission[state], 1, generator=g)[:, 0]
            out[:, i] = tok
            state = torch.multinomial(self.transition[state, tok], 1, generator=g)[:, 0]
        return out

    # -- exact conditionals ---------------------------------------------------------------
    def _check_tokens(self, tokens) -> torch.Tensor:
        if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2 or tokens.dtype not in (
                torch.long, torch.int32, torch.int64) or tokens.shape[1] < 1:
            got = (f"{tokens.dtype} tensor of shape {tuple(tokens.shape)}" if isinstance(tokens, torch.Tensor)
                   else type(tokens).__name__)
            raise LabError(f"tokens must be an integer tensor of shape (n, length >= 1), got {got}")
        t = tokens.detach().cpu().long()
        if (t[:, 0] != self.bos).any():
            raise LabError(f"tokens must start with the BOS id {self.bos} in column 0; allowed ids after it: "
                           f"0..{self.vocab - 1}")
        rest = t[:, 1:]
        if rest.numel() and ((rest < 0) | (rest >= self.vocab)).any():
            bad = int(rest[(rest < 0) | (rest >= self.vocab)][0])
            raise LabError(f"token id {bad} out of range after BOS; allowed: 0..{self.vocab - 1}")
        return t

    def _true_probs64(self, t: torch.Tensor) -> torch.Tensor:
        n, L = t.shape
        belief = self.initial.expand(n, -1).clone()  # over the state that emits the next token
        out = torch.empty(n, L, self.vocab, dtype=torch.float64)
        for i in range(L):
            out[:, i] = belief @ self.emission
            if i + 1 < L:
                tok = t[:, i + 1]
                post = belief * self.emission[:, tok].T  # (n, S) ∝ p(state | prefix, token)
                post = post / post.sum(1, keepdim=True)
                belief = torch.einsum("ns,nst->nt", post, self.transition[:, tok].permute(1, 0, 2))
        return out

    def true_next_token_probs(self, tokens: torch.Tensor) -> torch.Tensor:
        """Exact ``p(x_{i+1} | x_{<=i})``: float32 (n, length, vocab) on ``tokens.device``.

        Row ``i`` is the distribution of the real token after position ``i`` (row 0: after
        BOS; the last row predicts the token after the end). BOS itself has probability 0
        and is not a column.
        """
        t = self._check_tokens(tokens)
        return self._true_probs64(t).float().to(tokens.device)

    def nll(self, tokens: torch.Tensor) -> torch.Tensor:
        """Exact per-token negative log-likelihood (nats): float32 (n, length - 1) on ``tokens.device``.

        Entry ``i`` is ``-log p(x_{i+1} | x_{<=i})`` for the real tokens after BOS. Its mean
        over sampled sequences is the entropy-rate floor a language model can reach.
        """
        t = self._check_tokens(tokens)
        if t.shape[1] < 2:
            raise LabError(f"nll needs at least one token after BOS, got length {t.shape[1]}; allowed: length >= 2")
        p = self._true_probs64(t)[:, :-1]
        nll = -torch.log(p.gather(2, t[:, 1:, None])[..., 0])
        return nll.float().to(tokens.device)

    def entropy(self, tokens: torch.Tensor) -> torch.Tensor:
        """Entropy (nats) of each true conditional: float32 (n, length) on ``tokens.device``."""
        p = self._true_probs64(self._check_tokens(tokens))
        return (-(p * torch.log(p)).sum(-1)).float().to(tokens.device)

    def kl_to_truth(self, model_logits: torch.Tensor, tokens: torch.Tensor) -> float:
        """Mean ``KL(p_true || p_model)`` over positions; see the module function :func:`kl_to_truth`."""
        return kl_to_truth(model_logits, tokens, self)


def _floor(p: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Keep every probability positive (sparse Dirichlet draws can underflow) and renormalise."""
    p = np.maximum(p, eps)
    return p / p.sum(-1, keepdims=True)


def kl_to_truth(model_logits: torch.Tensor, tokens: torch.Tensor, language: SyntheticLanguage) -> float:
    """Mean over sequences and positions of ``KL(p_true || p_model)`` (nats): the mean of :func:`kl_rows_to_truth`.

    ``model_logits`` (n, L, V'): row ``i`` predicts the token after position ``i`` of
    ``tokens`` (n, >= L). ``V'`` is ``vocab`` or ``vocab + 1`` (a model that also scores BOS:
    the mass it puts on BOS counts as lost; the truth gives BOS probability 0).
    """
    return float(kl_rows_to_truth(model_logits, tokens, language).mean())


def kl_rows_to_truth(model_logits: torch.Tensor, tokens: torch.Tensor, language: SyntheticLanguage) -> torch.Tensor:
    """``KL(p_true || p_model)`` per sequence and position: float64 (n, L) on the CPU (see :func:`kl_to_truth`)."""
    if not isinstance(language, SyntheticLanguage):
        raise LabError(f"language must be a SyntheticLanguage, got {type(language).__name__}")
    if not isinstance(model_logits, torch.Tensor) or model_logits.ndim != 3:
        got = tuple(model_logits.shape) if isinstance(model_logits, torch.Tensor) else type(model_logits).__name__
        raise LabError(f"model_logits must be a tensor of shape (n, L, vocab), got {got}")
    n, L, V = model_logits.shape
    if V not in (language.vocab, language.model_vocab):
        raise LabError(f"model_logits last dimension {V}; allowed: {language.vocab} or {language.model_vocab}")
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2 or tokens.shape[0] != n or tokens.shape[1] < L:
        got = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise LabError(f"tokens must have shape ({n}, >= {L}) to match model_logits, got {got}")
    p_true = language._true_probs64(language._check_tokens(tokens))[:, :L]
    logq = torch.log_softmax(model_logits.detach().double().cpu(), dim=-1)[..., :language.vocab]
    return (p_true * (torch.log(p_true) - logq)).sum(-1)
