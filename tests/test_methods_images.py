"""Every image-capable method takes a class-conditional UNet teacher through the same code path: a few
steps on digits with a tiny UNet move the student's weights, keep every loss finite, and give a generator
of digit-shaped samples that follows its labels."""
from __future__ import annotations

import pytest
import torch

import lab
from lab.diffusion import Denoiser
from lab.diffusion.generators import FlowGenerator
from lab.errors import LabError
from lab.nets import build_net

IMAGE_METHODS = [m for m in lab.list_methods() if "images" in lab.get_method(m).data_kinds]
#: a tiny run (the 2D ``tiny`` configs minus their MLP nets; pairs and pools shrunk)
SHORT = {"progressive": {"steps": 5, "start_steps": 4, "halvings": 1},
         "guidance": {"steps": 13, "halvings": 1, "halving_steps": 10, "start_steps": 2, "n_traj": 8, "traj_steps": [1, 2]}}


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    net = build_net({"type": "unet", "channels": 1, "size": 8, "block_out_channels": [8, 16], "norm_num_groups": 8,
                     "n_classes": 10})
    with torch.no_grad():  # a label embedding large enough that labels visibly change the output
        net.y_emb.weight.normal_(0, 1.0)
    return FlowGenerator(Denoiser(net, "linear", "v"), "euler")


def test_image_methods_cover_the_issue():
    assert {"progressive", "consistency", "reflow", "dmd", "dmd2", "sid", "scm", "guidance"} <= set(IMAGE_METHODS)


@pytest.mark.parametrize("name", IMAGE_METHODS)
def test_method_trains_on_images(teacher, name):
    cls = lab.get_method(name)
    cfg = {k: v for k, v in cls.tiny.items() if k != "student_net"}
    cfg.update({"batch": 6, "steps": 3})  # 6: no size coincides with the 8x8 image side
    cfg.update({k: 16 for k in ("n_pairs", "n_traj") if hasattr(cls.Config, k)})
    cfg.update(SHORT.get(name, {}))
    m = cls(teacher, "digits", cfg, seed=0)
    assert m.shape == (1, 8, 8)
    params = [p for n in m.nets().values() for p in n.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    losses = [s.out.losses for s in lab.distill(m)]
    assert losses and all(torch.isfinite(torch.tensor(list(d.values()))).all() for d in losses)
    assert any(not torch.equal(a, b) for a, b in zip(before, params))
    gen = m.generator()
    nfe = min(gen.native_nfe) if gen.native_nfe else 1
    y0, y1 = torch.zeros(4, dtype=torch.long), torch.full((4,), 7)
    x0 = gen.sample(4, nfe=nfe, seed=0, y=y0).x
    x1 = gen.sample(4, nfe=nfe, seed=0, y=y1).x
    assert x0.shape == (4, 1, 8, 8) and torch.isfinite(x0).all()
    assert (x0 - x1).abs().max() > 1e-4  # the student follows its labels


@pytest.mark.parametrize("name", ["add", "msd", "sds", "vsd_particles"])
def test_point_only_methods_refuse_images(teacher, name):
    with pytest.raises(LabError, match=f"{name} supports points data, not images.*methods for images: .*consistency"):
        lab.get_method(name)(teacher, "digits", {"steps": 1})
