"""diffusers interop: lab image generators exported as diffusers pipelines give our images for the
same noise; local diffusers UNet2DModel pipelines load as lab teachers (DDIM-exact on a matched grid)."""
from __future__ import annotations

import json

import pytest
import torch

import lab
from lab.diffusion import Denoiser
from lab.diffusion.generators import ConsistencyGenerator, FlowGenerator, ReflowGenerator, load_generator, make_noise
from lab.diffusion.samplers import consistency_sample, ode_sample
from lab.errors import LabError
from lab.interop.diffusers import export_pipeline, flow_time, load_diffusers_teacher
from lab.nets import build_net

pytestmark = pytest.mark.filterwarnings("ignore")
TINY = {"type": "unet", "channels": 1, "size": 8, "block_out_channels": [8, 16], "norm_num_groups": 8}


def tiny_net(seed=0, **kw):
    torch.manual_seed(seed)
    net = build_net({**TINY, **kw})
    if getattr(net, "n_classes", 0):
        torch.nn.init.normal_(net.y_emb.weight, std=1.0)  # make labels matter, so a wrong fold shows
    return net.eval()


def pipe_images(folder, n, nfe, seed):
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe(batch_size=n, num_inference_steps=nfe, generator=torch.Generator().manual_seed(seed),
                output_type="pt").images


def to01(x):
    return (x / 2 + 0.5).clamp(0, 1)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    gen = FlowGenerator(Denoiser(tiny_net(0, n_classes=10), "linear", "v"), "euler")
    folder = tmp_path_factory.mktemp("interop") / "teacher"
    gen.save(folder)
    return load_generator(folder), folder


@pytest.mark.parametrize("nfe,label", [(4, 3), (None, None)])
def test_export_teacher_matches_our_sampler(teacher, tmp_path, nfe, label):
    gen, folder = teacher
    out = export_pipeline(folder, tmp_path / "pipe", nfe=nfe, label=label)
    n_steps = nfe or 50  # teachers export at 50 steps by default
    info = json.loads((out / "lab_export.json").read_text())
    assert info["nfe"] == n_steps and f"num_inference_steps={n_steps}" in (out / "README.md").read_text()
    im = pipe_images(out, 4, n_steps, seed=7)
    y = None if label is None else torch.full((4,), label)
    ref = to01(gen.sample(4, nfe=n_steps, seed=7, y=y).x)
    other = to01(gen.sample(4, nfe=n_steps, seed=7, y=torch.full((4,), 1)).x)  # a different label: the baseline
    assert ((ref > 0) & (ref < 1)).float().mean() > 0.3  # not all clamped: the comparison sees real values
    assert (im - ref).abs().max() < 1e-4
    assert (other - ref).abs().max() > 100 * (im - ref).abs().max()
    if nfe == 4:  # off the exported NFE, diffusers' own grid is close but not ours
        im8 = pipe_images(out, 4, 8, seed=7)
        ref8 = to01(gen.sample(4, nfe=8, seed=7, y=y).x)
        assert (im8 - ref8).abs().max() > 1e-4


def test_export_one_step_students(teacher, tmp_path):
    from lab.methods.distribution_matching.base import NoisyInputOneStepGenerator

    gen, _ = teacher
    flow_net, one_net = gen.denoiser.net, tiny_net(1, n_classes=10)
    students = {"consistency": ConsistencyGenerator(Denoiser(flow_net, "linear", "v")),
                "onestep_tinit": NoisyInputOneStepGenerator(Denoiser(flow_net, "linear", "v"), t_init=1.0),
                "reflow": ReflowGenerator(Denoiser(flow_net, "linear", "v"), Denoiser(one_net, "linear", "v"))}
    for kind, student in students.items():
        student.save(tmp_path / kind)
        out = export_pipeline(tmp_path / kind, tmp_path / f"{kind}_pipe", label=2)  # default: smallest native nfe = 1
        assert json.loads((out / "lab_export.json").read_text())["nfe"] == 1
        im = pipe_images(out, 4, 1, seed=5)
        ref = to01(student.sample(4, nfe=1, seed=5, y=torch.full((4,), 2)).x)
        assert (im - ref).abs().max() < 1e-4, kind
    NoisyInputOneStepGenerator(Denoiser(flow_net, "linear", "v"), t_init=0.75).save(tmp_path / "tinit")
    with pytest.raises(LabError, match="t_init=0.75"):
        export_pipeline(tmp_path / "tinit", tmp_path / "tinit_pipe")
    # reflow at nfe 1 must use its one-step net, not the flow
    flow1 = to01(FlowGenerator(Denoiser(flow_net, "linear", "v")).sample(4, nfe=1, seed=5, y=torch.full((4,), 2)).x)
    assert (flow1 - im).abs().max() > 1e-2


def test_export_multistep_consistency_renoises_like_ours(teacher, tmp_path):
    """At 2 steps the pipeline re-noises from its own generator (stochastic_sampling): exact when our
    consistency sampler draws its re-noise from the same generator stream."""
    gen, _ = teacher
    student = ConsistencyGenerator(Denoiser(gen.denoiser.net, "linear", "v"))
    student.save(tmp_path / "cm")
    out = export_pipeline(tmp_path / "cm", tmp_path / "cm_pipe", nfe=2)
    im = pipe_images(out, 4, 2, seed=9)
    g = torch.Generator().manual_seed(9)
    z = torch.randn((4, 1, 8, 8), generator=g)
    d = student.denoiser
    same_stream = consistency_sample(lambda x, t: d.x0(x, t), d.process, z, student.times(2), generator=g).x
    ours = student.sample(z=z, nfe=2, seed=9).x  # lab's own re-noise draws: same distribution, other numbers
    assert (im - to01(same_stream)).abs().max() < 1e-4
    assert (im - to01(ours)).abs().max() > 1e-2


def test_export_folds_w_and_refuses(teacher, tmp_path):
    from lab.methods.trajectory.guidance import CFGGenerator, GuidedFlowGenerator

    gen, folder = teacher
    student = GuidedFlowGenerator(Denoiser(tiny_net(2, n_classes=10, extra=("w",)), "linear", "v"), w=2.0)
    student.save(tmp_path / "guided")
    out = export_pipeline(tmp_path / "guided", tmp_path / "g_pipe", nfe=2, label=4, w=1.5)
    ref = to01(student.sample(4, nfe=2, seed=1, y=torch.full((4,), 4), w=1.5).x)
    at_default_w = to01(student.sample(4, nfe=2, seed=1, y=torch.full((4,), 4)).x)
    im = pipe_images(out, 4, 2, seed=1)
    assert (im - ref).abs().max() < 1e-4 and (at_default_w - ref).abs().max() > 1e-3
    # a shortcut student: its step size d = 1/nfe is folded in
    from lab.methods.flow_map.shortcut import ShortcutGenerator

    short = ShortcutGenerator(Denoiser(tiny_net(4, n_classes=10, extra=("d",)), "linear", "v"))
    short.save(tmp_path / "short")
    out_s = export_pipeline(tmp_path / "short", tmp_path / "s_pipe", nfe=2)
    assert (pipe_images(out_s, 4, 2, seed=1) - to01(short.sample(4, nfe=2, seed=1).x)).abs().max() < 1e-4
    # an extra condition export cannot fix
    FlowGenerator(Denoiser(tiny_net(3, extra=("foo",)), "linear", "v")).save(tmp_path / "foo")
    with pytest.raises(LabError, match="'foo'"):
        export_pipeline(tmp_path / "foo", tmp_path / "foo_pipe")
    # overwrite: refused, existing folder untouched; allowed with overwrite=True, no temp folders left
    before = (out / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    with pytest.raises(LabError, match="exists"):
        export_pipeline(folder, out, nfe=1)
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == before
    export_pipeline(folder, out, nfe=1, overwrite=True)
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() != before
    assert json.loads((out / "lab_export.json").read_text())["kind"] == "flow"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    # non-exportable kinds and networks
    CFGGenerator(Denoiser(gen.denoiser.net, "linear", "v")).save(tmp_path / "cfg")
    with pytest.raises(LabError, match="cannot export generator kind 'cfg'; exportable: flow"):
        export_pipeline(tmp_path / "cfg", tmp_path / "x")
    FlowGenerator(Denoiser(build_net({"type": "mlp"}), "linear", "v")).save(tmp_path / "mlp")
    with pytest.raises(LabError, match="TimeMLP"):
        export_pipeline(tmp_path / "mlp", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_cli_export(teacher, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from lab.cli import app
    from lab.methods.trajectory.guidance import CFGGenerator

    gen, folder = teacher
    runner = CliRunner()
    ok = runner.invoke(app, ["export", str(folder), "--format", "diffusers", "--out", str(tmp_path / "p"),
                             "--nfe", "2", "--label", "7"])
    assert ok.exit_code == 0, ok.output
    im = pipe_images(tmp_path / "p", 2, 2, seed=0)
    assert (im - to01(gen.sample(2, nfe=2, seed=0, y=torch.full((2,), 7)).x)).abs().max() < 1e-4
    # a zoo entry name resolves through lab.zoo.find (image zoo entries are not built here: stub it)
    monkeypatch.setattr(lab.zoo, "find", lambda name: folder if name == "digits/teacher" else None)
    ok = runner.invoke(app, ["export", "digits/teacher", "--out", str(tmp_path / "z"), "--nfe", "1"])
    assert ok.exit_code == 0, ok.output
    assert json.loads((tmp_path / "z" / "lab_export.json").read_text())["source"] == "digits/teacher"
    CFGGenerator(Denoiser(gen.denoiser.net, "linear", "v")).save(tmp_path / "cfg")
    cases = {"unbuilt": (["export", "digits/student", "--out", str(tmp_path / "q")], "not built"),
             "onnx": (["export", str(folder), "--format", "onnx", "--out", str(tmp_path / "q")], "diffusers"),
             "cfg": (["export", str(tmp_path / "cfg"), "--out", str(tmp_path / "q")], "'cfg'"),
             "exists": (["export", str(folder), "--out", str(tmp_path / "p")], "--overwrite"),
             "label": (["export", str(folder), "--out", str(tmp_path / "q"), "--label", "10"], "0..9")}
    for name, (args, needle) in cases.items():
        r = runner.invoke(app, args)
        lines = r.stderr.strip().splitlines()
        assert r.exit_code == 2, (name, r.output)
        assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], (name, r.stderr)
        assert "Traceback" not in r.output
    assert not (tmp_path / "q").exists()


# ---------------------------------------------------------------- import
def tiny_ddpm_folder(path, prediction_type="epsilon", seed=0):
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(seed)
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), norm_num_groups=8,
                       layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"))
    DDPMPipeline(unet, DDPMScheduler(prediction_type=prediction_type)).save_pretrained(path)
    return unet.eval()


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_import_ddpm_equals_ddim(tmp_path, prediction_type):
    from diffusers import DDIMPipeline, DDIMScheduler, DDPMScheduler

    unet = tiny_ddpm_folder(tmp_path / "ddpm", prediction_type)
    gen = load_diffusers_teacher(tmp_path / "ddpm")
    # DDIM (eta = 0, no clipping: our sampler never clips) with diffusers' own loop
    ddim = DDIMScheduler.from_config(DDPMScheduler.from_pretrained(tmp_path / "ddpm", subfolder="scheduler").config,
                                     clip_sample=False)
    steps = 10
    ddim.set_timesteps(steps)
    z = make_noise(4, (1, 8, 8), seed=3)
    x = z.clone()
    with torch.no_grad():
        for t in ddim.timesteps:
            x = ddim.step(unet(x, t).sample, t, x, eta=0.0).prev_sample
    # ours: Euler on the linear flow, on the time grid with DDIM's SNRs (set_alpha_to_one: the last time is 0)
    ac = ddim.alphas_cumprod[ddim.timesteps]
    times = torch.cat([flow_time(ac), torch.zeros(1, dtype=torch.float64)]).float()
    z_lin = z / (ac[0].sqrt() + (1 - ac[0]).sqrt()).float()  # x_lin = x_vp * t / sigma_vp
    ours = ode_sample(gen.denoiser, z_lin, steps, "euler", times=times).x
    scale = max(1.0, float(x.abs().max()))
    assert (ours - x).abs().max() < 1e-5 * scale
    # the baseline: our default uniform grid is a different sampler
    uniform = gen.sample(z=z, nfe=steps).x
    assert (uniform - x).abs().max() > 1e-2 * scale
    # and DDIMPipeline itself
    pipe = DDIMPipeline(unet, ddim)
    pipe.set_progress_bar_config(disable=True)
    im = pipe(batch_size=4, generator=torch.Generator().manual_seed(3), num_inference_steps=steps, eta=0.0,
              output_type="pt").images
    assert (im - to01(ours)).abs().max() < 1e-4


def test_import_round_trip(tmp_path):
    tiny_ddpm_folder(tmp_path / "ddpm", "epsilon")
    gen = load_diffusers_teacher(tmp_path / "ddpm")
    assert gen.shape == (1, 8, 8) and gen.denoiser.pred == "v"
    gen.save(tmp_path / "lab_teacher", card={"note": "imported"})
    spec = json.loads((tmp_path / "lab_teacher" / "model.json").read_text())
    assert spec["nets"]["denoiser"]["type"] == "diffusers_unet"
    again = load_generator(tmp_path / "lab_teacher")
    a, b = gen.sample(3, nfe=5, seed=1).x, again.sample(3, nfe=5, seed=1).x
    assert torch.equal(a, b) and a.std() > 0
    tiny_ddpm_folder(tmp_path / "other", "epsilon", seed=1)
    other = load_diffusers_teacher(tmp_path / "other")
    assert not torch.equal(other.sample(3, nfe=5, seed=1).x, a)  # the weights, not the config, made the samples


@pytest.mark.parametrize("method_name,config", [
    ("consistency", {"steps": 2, "batch": 4}),
    ("progressive", {"steps": 2, "batch": 4, "start_steps": 4, "halvings": 1}),
])
def test_imported_teacher_distils(tmp_path, method_name, config):
    """A distillation method takes a step on an imported teacher (digits: shape (1, 8, 8))."""
    tiny_ddpm_folder(tmp_path / "ddpm", "epsilon")
    teacher = load_diffusers_teacher(tmp_path / "ddpm")
    method = lab.get_method(method_name)(teacher, "digits", config)
    nets = [p for net in method.nets().values() for p in net.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in nets]
    state = next(iter(lab.distill(method, steps=1)))
    assert state.out.losses and all(torch.isfinite(torch.as_tensor(v)).all() for v in state.out.losses.values())
    assert nets and any(not torch.equal(p0, p) for p0, p in zip(before, nets))


def test_import_flow_match_export_round_trip(teacher, tmp_path):
    """Our export loads back through the FlowMatchEuler branch and samples like the original on any grid."""
    gen, folder = teacher
    out = export_pipeline(folder, tmp_path / "pipe", nfe=4, label=6)
    back = load_diffusers_teacher(out)
    y = torch.full((3,), 6)
    for nfe in (3, 4):
        assert (back.sample(3, nfe=nfe, seed=2).x - gen.sample(3, nfe=nfe, seed=2, y=y).x).abs().max() < 1e-4
    with pytest.raises(LabError, match="model_index.json"):
        load_diffusers_teacher(folder)
