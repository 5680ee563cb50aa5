"""Teacher training: flow matching (velocity) or denoising (eps / x0) on any process."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from lab.data.toy2d import Source, resolve
from lab.diffusion.denoiser import PRED_TYPES, Denoiser
from lab.diffusion.generators import FlowGenerator
from lab.diffusion.process import PROCESSES, get_process
from lab.errors import LabError
from lab.losses import sq_dist
from lab.nets import DIFFUSION_TYPES, build_net, check_net_spec, spec_for
from lab.trainable import StepOutput, Trainable, check, is_num


@dataclass
class TeacherConfig:
    steps: int = 4000
    batch: int = 1024
    lr: float = 2e-3
    #: gradient-norm clipping (0 = off)
    grad_clip: float = 0.0
    process: str = "linear"
    pred: str = "v"
    #: the network spec; on images an MLP spec is replaced by the data's UNet (lab.nets.spec_for)
    net: dict = field(default_factory=lambda: {"type": "mlp", "hidden": 256, "depth": 3, "t_dim": 32})
    conditional: bool = False
    label_dropout: float = 0.1
    solver: str = "euler"

    def __post_init__(self):
        check(isinstance(self.steps, int) and self.steps >= 1, "steps", self.steps, "an integer >= 1")
        check(isinstance(self.batch, int) and self.batch >= 2, "batch", self.batch, "an integer >= 2")
        check(is_num(self.lr) and self.lr > 0, "lr", self.lr, "a positive float")
        check(isinstance(self.process, str) and self.process in PROCESSES, "process", self.process, ", ".join(PROCESSES))
        check(isinstance(self.pred, str) and self.pred in PRED_TYPES, "pred", self.pred, ", ".join(PRED_TYPES))
        check(is_num(self.grad_clip) and self.grad_clip >= 0, "grad_clip", self.grad_clip, "a float >= 0 (0 = off)")
        check(is_num(self.label_dropout) and 0.0 <= self.label_dropout < 1.0, "label_dropout", self.label_dropout, "a float in [0, 1)")
        check(isinstance(self.net, dict), "net", self.net, "a JSON object (network spec)")
        self.net = check_net_spec(self.net, "net", DIFFUSION_TYPES, complete=True)
        check(isinstance(self.solver, str) and self.solver in ("euler", "heun", "ddim"), "solver", self.solver, "euler, heun, ddim")
        check(not (self.process == "vp_cosine" and self.pred == "eps"), "pred", self.pred,
              "x0 or v with process vp_cosine (eps prediction is singular at t = 1, where alpha = 0)")


class TeacherTraining(Trainable):
    """Flow matching when pred='v' on the linear process; otherwise denoising in the chosen parameterisation.

    Cosine learning-rate decay to 5% over the run.
    """

    name = "teacher"

    def __init__(self, data: "Source | str", config: TeacherConfig | None = None, seed: int = 0, device=None):
        super().__init__(seed, device)
        self.data = resolve(data)
        self.config = config or TeacherConfig()
        c = self.config
        self.total_steps = c.steps
        if c.conditional and not self.data.n_classes:
            raise LabError(f"conditional=True needs labelled data; {self.data.spec} has no classes")
        self.shape = tuple(self.data.shape)
        spec = spec_for(self.shape, c.net, **({"n_classes": self.data.n_classes} if c.conditional else {}))
        torch.manual_seed(self.seed)
        self.net = self.add_net("denoiser", build_net(spec), lr=c.lr)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.optimizers["denoiser"], lambda i: 0.05 + 0.95 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * min(i, c.steps) / c.steps)).item()))
        self.denoiser = Denoiser(self.net, get_process(c.process), c.pred)

    def sample_batch(self, it):
        c = self.config
        x0, y = self.data.sample(c.batch, self.rng, labelled=True)
        x0, y = x0.to(self.device), y.to(self.device)
        if c.conditional:
            drop = self.rand(c.batch) < c.label_dropout
            y = torch.where(drop, torch.full_like(y, self.data.n_classes), y)
        else:
            y = None
        return {"x0": x0, "eps": self.randn(c.batch, *self.shape), "t": self.rand(c.batch), "y": y}

    def step(self, batch, it):
        c, proc = self.config, self.denoiser.process
        x0, eps, t = batch["x0"], batch["eps"], batch["t"]
        x_t = proc.add_noise(x0, eps, t)
        out = self.denoiser.raw(x_t, t, batch["y"])
        target = {"v": proc.v_from_x0_eps(t, x0, eps, x0), "eps": eps, "x0": x0}[c.pred]
        loss = sq_dist(out, target).mean()
        opt = self.optimizers["denoiser"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if c.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), c.grad_clip)
        opt.step()
        self.sched.step()
        return StepOutput(losses={"denoise": loss.item()}, metrics={"lr": self.sched.get_last_lr()[0]}, stage="teacher")

    def ema_nets(self):
        return {"denoiser": self.net}

    def extra_state(self):
        return {"sched": self.sched.state_dict()}

    def load_extra_state(self, sd):
        if "sched" in sd:
            self.sched.load_state_dict(sd["sched"])

    def generator(self) -> FlowGenerator:
        return FlowGenerator(self.denoiser, self.config.solver)

    def config_dict(self) -> dict:
        return asdict(self.config)
