"""Teacher training: flow matching (velocity) or denoising (eps / x0) on any process."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from lab.config import Config, check, param
from lab.data.toy2d import Source, resolve
from lab.diffusion.denoiser import PRED_TYPES, Denoiser
from lab.diffusion.generators import FlowGenerator
from lab.diffusion.process import PROCESSES, get_process
from lab.errors import LabError
from lab.losses import sq_dist
from lab.nets import DIFFUSION_TYPES, build_net, check_net_spec, spec_for
from lab.trainable import StepOutput, Trainable, cosine_decay


def _diffusion_net(spec, name):
    return check_net_spec(spec, name, DIFFUSION_TYPES, complete=True)


@dataclass
class TeacherConfig(Config):
    steps: int = param(4000, ge=1)
    batch: int = param(1024, ge=2)
    lr: float = param(2e-3, gt=0)
    grad_clip: float = param(0.0, ge=0, note="0 = off")
    process: str = param("linear", choices=PROCESSES)
    pred: str = param("v", choices=PRED_TYPES)
    #: the network spec; on images an MLP spec is replaced by the data's UNet (lab.nets.spec_for)
    net: dict = param({"type": "mlp", "hidden": 256, "depth": 3, "t_dim": 32}, spec=_diffusion_net,
                      note="network spec")
    conditional: bool = False
    label_dropout: float = param(0.1, ge=0, lt=1)
    solver: str = param("euler", choices=("euler", "heun", "ddim"))

    def validate(self):
        super().validate()
        check(self.pred != "eps", "pred", self.pred,
              f"x0 or v with process {self.process} (eps prediction is singular at t = 1, where alpha = 0)")


class TeacherTraining(Trainable):
    """Flow matching when pred='v' on the linear process; otherwise denoising in the chosen parameterisation.

    Cosine learning-rate decay to 5% over the run.
    """

    name = "teacher"
    Config = TeacherConfig

    def __init__(self, data: "Source | str", config: TeacherConfig | dict | None = None, seed: int = 0, device=None):
        super().__init__(seed, device)
        self.data = resolve(data)
        self.use_config(config)
        c = self.config
        if c.conditional and not self.data.n_classes:
            raise LabError(f"conditional=True needs labelled data; {self.data.spec} has no classes")
        self.shape = tuple(self.data.shape)
        spec = spec_for(self.shape, c.net, **({"n_classes": self.data.n_classes} if c.conditional else {}))
        torch.manual_seed(self.seed)
        self.net = self.add_net("denoiser", build_net(spec), lr=c.lr)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.optimizers["denoiser"],
                                                       lambda i: cosine_decay(i / c.steps, floor=0.05))
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
        self.backward(loss)  # scaled under fp16; under torchrun DDP averages the gradients across ranks here
        self.optimizer_step(opt, c.grad_clip, self.net.parameters())
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
