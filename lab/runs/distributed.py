"""Data-parallel training under ``torchrun`` with PyTorch's DistributedDataParallel (DDP).

    torchrun --nproc_per_node 2 -m lab distill --method dmd --teacher toy2d/8gaussians/teacher --out runs/d

The lab writes no launcher and no collective of its own: ``torchrun`` starts the processes and sets
RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; :func:`init` joins the process group
(``gloo`` on CPU, ``nccl`` on CUDA, device ``cuda:LOCAL_RANK``); every trained network (one with an
optimiser) is wrapped in :class:`torch.nn.parallel.DistributedDataParallel`, whose backward averages
the gradients across ranks (PyTorch DDP docs; Li et al. 2020, "PyTorch Distributed: Experiences on
Accelerating Data Parallel Training"). Frozen teachers and EMA / target copies are not wrapped: every
rank holds an identical copy and updates it identically.

Design (why the 1-process and N-process runs agree up to float error, and why resume across world sizes
is trivial): every rank draws the SAME global batch from the trainable's shared seeded CPU generator
(``config.batch`` is the global batch) and keeps its own contiguous slice (:func:`shard`). While a step
runs the trainable sees the local batch size in ``config.batch``, and a draw of its ``randn / rand /
randint`` whose first dimension is that local size is drawn for the global batch and sliced
(:meth:`lab.trainable.Trainable.randn`), so the randomness inside ``step`` is the one-process
randomness too. For a loss that is a mean over the batch, the average of the ranks' gradients is the
full-batch gradient; the step's losses and metrics are averaged across ranks (:func:`reduce_output`).
Checkpoints hold the unwrapped networks and the shared generator's state, so a run written under one
world size resumes under any other. Only rank 0 writes the run folder and shows the progress bar.

Wrapping is transparent to the methods: they keep calling their own modules (inside Denoisers, KD
students, ...); the module's ``forward`` is routed through its DDP wrapper whenever gradients are
enabled (no-grad calls such as evaluation and sampling bypass DDP, so rank 0 can sample alone). Every
few steps the ranks compare a checksum of their trained parameters and stop with one line if they
drifted apart (a method that trains a network outside its ``forward`` would do that).

Limits: DDP does not support ``torch.autograd.grad`` or forward-mode transforms through a wrapped module,
so the methods in :data:`UNSUPPORTED` are refused by name; dataset distillation trains images, not
networks, and is refused too. BatchNorm statistics are per rank (no SyncBatchNorm); every rank runs
``sample_batch`` on the whole global batch (only the networks' forward/backward is split).
"""
from __future__ import annotations

import contextlib
import copy
import datetime
import os
from dataclasses import dataclass

import torch

from lab.errors import LabError
from lab.trainable import StepOutput

#: method name -> why it cannot run under DDP (refused with this reason)
UNSUPPORTED = {
    "scm": "its tangent is a forward-mode jvp through the student, which DDP does not support",
    "add": "its R1 penalty takes torch.autograd.grad through the discriminator, which DDP does not support",
    "sid": "its loss takes torch.autograd.grad through the generator's samples, which DDP does not support",
    "flowmap": "objective='jvp' takes a forward-mode jvp through the student, which DDP does not support",
}

#: how often (steps) the ranks compare a checksum of their trained parameters
SYNC_CHECK_EVERY = 25


@dataclass
class World:
    rank: int
    size: int
    local_rank: int

    @property
    def main(self) -> bool:
        return self.rank == 0


def env_world() -> World | None:
    """The torchrun environment (WORLD_SIZE > 1), or None for a single process."""
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if size <= 1:
        return None
    try:
        return World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", os.environ["RANK"])))
    except KeyError as e:
        raise LabError(f"WORLD_SIZE={size} but {e.args[0]} is not set; launch with torchrun --nproc_per_node N "
                       "-m lab ...") from None


_WORLD: World | None = None


def current() -> World | None:
    """The joined world (after :func:`init`), or None."""
    return _WORLD


def is_main() -> bool:
    return _WORLD is None or _WORLD.main


def init(device) -> "tuple[World | None, torch.device]":
    """Join the torchrun process group if there is one: returns (world, this rank's device). ``device`` is
    the requested device (a torch.device); on CUDA each rank takes cuda:LOCAL_RANK."""
    global _WORLD
    w = env_world()
    device = torch.device(device)
    if w is None:
        return None, device
    import torch.distributed as dist

    if device.type == "cuda":
        if device.index is not None and device.index != w.local_rank:
            raise LabError(f"--device {device} under torchrun: each rank uses cuda:LOCAL_RANK; pass --device cuda")
        device = torch.device("cuda", w.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise LabError(f"distributed training on {device.type} is not supported; allowed: cpu (gloo), cuda (nccl)")
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=10))
    _WORLD = w
    return w, device


def barrier() -> None:
    if _WORLD is not None:
        import torch.distributed as dist

        dist.barrier()


def agree(ok: bool) -> bool:
    """True when every rank passes ok=True (a collective: every rank calls it; one rank's failure is every
    rank's)."""
    if _WORLD is None:
        return ok
    import torch.distributed as dist

    v = torch.tensor([1 if ok else 0], dtype=torch.int64)
    dist.all_reduce(v, op=dist.ReduceOp.MIN)
    return bool(v.item())


def shutdown() -> None:
    global _WORLD
    if _WORLD is not None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    _WORLD = None


def check_supported(kind: str, trainable) -> None:
    """Refuse (one line) what cannot run under DDP."""
    if kind == "dd":
        raise LabError("dataset distillation cannot run under torchrun (it trains images through "
                       "torch.autograd.grad, which DDP does not support); run it in one process")
    name = getattr(trainable, "name", "")
    if name in UNSUPPORTED and (name != "flowmap" or getattr(trainable.config, "objective", "") == "jvp"):
        raise LabError(f"{name} cannot run under torchrun: {UNSUPPORTED[name]}; run it in one process "
                       f"(methods refused: {', '.join(sorted(UNSUPPORTED))})")


# ---------------------------------------------------------------- wrapping
_DDP: dict[int, tuple] = {}  # id(module) -> (module, DDP wrapper)
_INSIDE: set[int] = set()


def _routed_forward(self, *args, **kwargs):
    entry = _DDP.get(id(self))
    orig = type(self).forward
    if entry is None or entry[0] is not self or id(self) in _INSIDE or not torch.is_grad_enabled():
        return orig(self, *args, **kwargs)  # a deep copy of a wrapped net, DDP's own call, or a no-grad call
    _INSIDE.add(id(self))
    try:
        return entry[1](*args, **kwargs)
    finally:
        _INSIDE.discard(id(self))


def trained_nets(trainable) -> dict:
    """The networks that have an optimiser and trainable parameters (what DDP wraps)."""
    nets = getattr(trainable, "networks", {})
    return {k: n for k, n in nets.items() if k in getattr(trainable, "optimizers", {})
            and any(p.requires_grad for p in n.parameters())}


def wrap(trainable, world: World) -> None:
    """Wrap every trained network of ``trainable`` in DDP (see the module docstring) and mark it sharded."""
    import types

    from torch.nn.parallel import DistributedDataParallel as DDP

    dev = trainable.device
    for name, net in trained_nets(trainable).items():
        if id(net) in _DDP and _DDP[id(net)][0] is net:
            continue
        ddp = DDP(net, device_ids=[dev.index] if dev.type == "cuda" else None, broadcast_buffers=False,
                  find_unused_parameters=True)
        _DDP[id(net)] = (net, ddp)
        net.forward = types.MethodType(_routed_forward, net)
    trainable._world = (world.rank, world.size)


def unwrap(trainable) -> None:
    for net in getattr(trainable, "networks", {}).values():
        if _DDP.get(id(net), (None,))[0] is net:
            del _DDP[id(net)]
            net.__dict__.pop("forward", None)
    trainable._world = None


# ---------------------------------------------------------------- batches and metrics
def global_batch_size(trainable, batch) -> int:
    """The leading size of the batch's per-sample tensors: the config's batch when some tensor has it, else the
    largest leading size (e.g. a KD task with fewer training examples than the batch)."""
    sizes = []

    def walk(v):
        if torch.is_tensor(v):
            if v.ndim >= 1:
                sizes.append(int(v.shape[0]))
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)

    walk(batch)
    want = int(getattr(getattr(trainable, "config", None), "batch", 0) or 0)
    if want in sizes:
        return want
    if not sizes:
        raise LabError(f"{trainable.name}: the batch has no tensors to shard across ranks")
    return max(sizes)


def shard(batch, n: int, rank: int, size: int):
    """This rank's contiguous slice of every tensor whose first dimension is the global batch size n."""
    if n % size:
        raise LabError(f"the global batch {n} does not split over {size} ranks; allowed: a batch divisible by {size}")
    k = n // size
    lo, hi = rank * k, (rank + 1) * k

    def cut(v):
        if torch.is_tensor(v):
            return v[lo:hi] if v.ndim >= 1 and v.shape[0] == n else v
        if isinstance(v, dict):
            return {key: cut(x) for key, x in v.items()}
        if isinstance(v, list):
            return [cut(x) for x in v]
        if isinstance(v, tuple):
            return tuple(cut(x) for x in v)
        return v

    return cut(batch)


@contextlib.contextmanager
def local_step(trainable, n: int, size: int):
    """While a step runs: ``config.batch`` is the local batch and per-sample draws are sharded."""
    k = n // size
    cfg = trainable.config
    local = copy.copy(cfg)
    if hasattr(local, "batch"):
        object.__setattr__(local, "batch", k)
    trainable.config, trainable._shard_n = local, k
    try:
        yield
    finally:
        trainable.config, trainable._shard_n = cfg, None


def reduce_output(out: StepOutput) -> StepOutput:
    """The step's losses and metrics averaged across ranks (every rank reports the same keys)."""
    import torch.distributed as dist

    keys = [("l", k) for k in out.losses] + [("m", k) for k in out.metrics]
    if not keys or _WORLD is None:
        return out
    v = torch.tensor([float(out.losses[k] if s == "l" else out.metrics[k]) for s, k in keys], dtype=torch.float64)
    dist.all_reduce(v)
    v /= _WORLD.size
    losses = {k: float(x) for (s, k), x in zip(keys, v.tolist()) if s == "l"}
    metrics = {k: float(x) for (s, k), x in zip(keys, v.tolist()) if s == "m"}
    return StepOutput(losses=losses, metrics=metrics, internals=out.internals, stage=out.stage)


def check_in_sync(trainable, it: int) -> None:
    """Stop with one line when the ranks' trained parameters differ (a collective: every rank calls it)."""
    import torch.distributed as dist

    nets = trained_nets(trainable)
    if not nets:
        return
    sums = torch.tensor([float(sum(p.detach().double().sum() for p in n.parameters())) for n in nets.values()],
                        dtype=torch.float64)
    lo, hi = sums.clone(), sums.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    bad = [k for k, a, b in zip(nets, lo.tolist(), hi.tolist()) if abs(a - b) > 1e-6 * max(1.0, abs(a))]
    if bad:
        raise LabError(f"{trainable.name}: the ranks' networks {', '.join(bad)} drifted apart by step {it} (a network "
                       "trained outside its forward?); run it in one process")
