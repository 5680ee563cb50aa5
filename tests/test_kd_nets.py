"""Classifier networks with named layers (lab.nets.classifiers) and forward-hook feature taps (lab.nets.hooks)."""
import json

import pytest
import torch
import torch.nn.functional as F

from lab.errors import LabError
from lab.nets import build_net
from lab.nets.classifiers import CNNClassifier, MLPClassifier, TinyLM, TinyViT, build_classifier, param_count
from lab.nets.hooks import FeatureTap, tap_features


def _nets():
    torch.manual_seed(0)
    return {
        "mlp": (MLPClassifier(64, hidden=(32, 16)), torch.randn(5, 1, 8, 8)),
        "cnn": (CNNClassifier(channels=(8, 12)), torch.randn(5, 1, 8, 8)),
        "vit": (TinyViT(depth=3), torch.randn(5, 1, 8, 8)),
        "lm": (TinyLM(vocab=17, seq_len=12, depth=2), torch.randint(0, 17, (5, 10))),
    }


EXPECTED = {  # layer -> output shape for the inputs above
    "mlp": {"fc1": (5, 32), "fc2": (5, 16), "head": (5, 10)},
    "cnn": {"conv1": (5, 8, 8, 8), "conv2": (5, 12, 8, 8), "pool": (5, 12 * 4), "head": (5, 10)},
    "vit": {"patch_embed": (5, 16, 32), "block1": (5, 16, 32), "block2": (5, 16, 32), "block3": (5, 16, 32),
            "norm": (5, 16, 32), "head": (5, 10)},
    "lm": {"embed": (5, 10, 32), "block1": (5, 10, 32), "block2": (5, 10, 32), "norm": (5, 10, 32),
           "head": (5, 10, 17)},
}


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_layer_shapes_and_names(kind):
    net, x = _nets()[kind]
    assert net.feature_layers == list(EXPECTED[kind])
    with FeatureTap(net, net.feature_layers, detach=True) as tap:
        out = net(x)
    for name, shape in EXPECTED[kind].items():
        assert tuple(tap[name].shape) == shape, name
    assert torch.equal(out, tap["head"])
    assert param_count(net) == sum(p.numel() for p in net.parameters()) > 0


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_spec_round_trip(kind):
    net, x = _nets()[kind]
    spec = json.loads(json.dumps(net.spec()))  # through JSON: tuples become lists
    torch.manual_seed(123)  # a different initialisation, overwritten by the state dict
    for rebuilt in (build_classifier(spec), build_net(spec)):
        assert type(rebuilt) is type(net) and rebuilt.spec() == net.spec()
        assert not torch.equal(rebuilt(x), net(x))
        rebuilt.load_state_dict(net.state_dict())
        assert torch.equal(rebuilt(x), net(x))


def test_bad_specs_raise_one_line_errors():
    with pytest.raises(LabError, match="allowed: clf_mlp, clf_cnn, clf_vit, tiny_lm"):
        build_classifier({"type": "resnet"})
    with pytest.raises(LabError, match="depht.*allowed"):
        build_classifier({"type": "clf_vit", "depht": 2})
    with pytest.raises(LabError, match="divisible"):
        TinyViT(size=8, patch=3)
    with pytest.raises(LabError, match="0..16"):
        TinyLM()(torch.tensor([[3, 17]]))


def test_tiny_lm_is_causal():
    torch.manual_seed(0)
    net = TinyLM(vocab=17, seq_len=16)
    tokens = torch.randint(0, 17, (4, 16))
    base = net(tokens)
    for j in (0, 5, 15):
        changed = tokens.clone()
        changed[:, j] = (changed[:, j] + 1) % 17
        out = net(changed)
        assert torch.allclose(out[:, :j], base[:, :j], atol=1e-6), j  # the past does not see the future
        assert not torch.allclose(out[:, j:], base[:, j:], atol=1e-4), j  # and position j itself does see token j


@pytest.mark.parametrize("kind", ["vit", "lm"])
def test_attention_probabilities_and_values(kind):
    net, x = _nets()[kind]
    logits, attns, values = net(x, return_attention=True)
    assert torch.equal(logits, net(x))
    assert len(attns) == len(values) == net.depth
    t = attns[0].shape[-1]
    for a, v in zip(attns, values):
        assert a.shape == (5, net.heads, t, t) and v.shape == (5, net.heads, t, net.dim // net.heads)
        assert torch.allclose(a.sum(-1), torch.ones(()), atol=1e-5)
    if kind == "lm":  # causal: no weight on later positions
        assert torch.all(attns[0].triu(1) == 0)
    assert all(getattr(net, f"block{k}").last_attention is None for k in range(1, net.depth + 1))
    # the block's attention output, recomputed by hand from the returned probabilities and values
    with FeatureTap(net, ["block1.attn"]) as tap:
        net(x)
    a, v = attns[0], values[0]
    manual = net.block1.attn.proj((a @ v).transpose(1, 2).reshape(5, t, net.dim))
    assert torch.allclose(tap["block1.attn"][0], manual, atol=1e-6)


def test_feature_tap_matches_manual_forward_and_cleans_up():
    net, x = _nets()["mlp"]
    with FeatureTap(net, ["fc1", "head"]) as tap:
        out = net(x)
        assert len(net.fc1._forward_hooks) == 1 and len(net.head._forward_hooks) == 1
    h1 = torch.relu(x.reshape(5, -1) @ net.fc1[0].weight.T + net.fc1[0].bias)
    h2 = torch.relu(h1 @ net.fc2[0].weight.T + net.fc2[0].bias)
    assert torch.allclose(tap["fc1"], h1, atol=1e-6)
    assert torch.allclose(tap["head"], h2 @ net.head.weight.T + net.head.bias, atol=1e-6)
    assert torch.equal(out, tap["head"])
    assert tap["fc1"].requires_grad  # not detached by default: a feature loss can back-propagate
    assert all(len(m._forward_hooks) == 0 for m in net.modules())
    assert torch.equal(net(x), out)  # the model is unchanged

    cnn, xc = _nets()["cnn"]
    out, feats = tap_features(cnn, xc, ["conv1", "pool"])
    manual = F.relu(F.conv2d(xc, cnn.conv1[0].weight, cnn.conv1[0].bias, padding=1))
    assert torch.allclose(feats["conv1"], manual, atol=1e-6) and not feats["conv1"].requires_grad
    assert torch.allclose(cnn.head(feats["pool"]), out, atol=1e-6)
    assert all(len(m._forward_hooks) == 0 for m in cnn.modules())


def test_feature_tap_removes_hooks_on_error_and_rejects_bad_names():
    net, x = _nets()["cnn"]
    with pytest.raises(RuntimeError):
        with FeatureTap(net, ["conv2"]):
            net(torch.randn(2, 1, 8, 8))
            raise RuntimeError("boom")
    assert all(len(m._forward_hooks) == 0 for m in net.modules())
    with pytest.raises(LabError, match=r"unknown layer 'conv9'.*available: conv1, conv2, pool, head"):
        FeatureTap(net, ["conv1", "conv9"])
    assert all(len(m._forward_hooks) == 0 for m in net.modules())
    with FeatureTap(net, ["conv1"]) as tap:
        with pytest.raises(LabError, match="has not run yet"):
            tap["conv1"]
        with pytest.raises(LabError, match="not tapped"):
            tap["head"]


def test_cnn_learns_digits_in_100_steps():
    from lab.data.images import Digits

    train, test = Digits("train"), Digits("test")
    torch.manual_seed(0)
    net = CNNClassifier()
    with torch.no_grad():
        untrained = (net(test.x).argmax(1) == test.y).float().mean().item()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        x, y = train.sample(64, g, labelled=True)
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = (net(test.x).argmax(1) == test.y).float().mean().item()
    assert acc > 0.8 and acc > untrained + 0.5, (acc, untrained)
