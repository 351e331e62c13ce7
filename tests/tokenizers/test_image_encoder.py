"""ImageEncoder: every source gives [B, N, D] with gradients; freezing, local weights, transforms, errors."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import open_clip
import pytest
import timm
import torch
from safetensors.torch import save_file
from torch.testing import assert_close

from anytoken.tokenizers.image_encoder import (
    ImageEncoder,
    ImageEncoderConfig,
    image_mean_std,
)

TINY_OPEN_CLIP_VIT = {"layers": 1, "width": 64, "head_width": 32, "patch_size": 16}
TINY_TEXT_CFG = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 1, "layers": 1}

CONFIGS = {
    "cnn": ImageEncoderConfig(source="cnn"),
    "cnn-grid4": ImageEncoderConfig(source="cnn", cnn_width=32, cnn_grid=4),
    "timm-resnet10t": ImageEncoderConfig(source="timm", name="resnet10t"),
    "timm-vit": ImageEncoderConfig(source="timm", name="vit_tiny_patch16_224", model_kwargs={"depth": 1}),
    "open_clip-vit": ImageEncoderConfig(source="open_clip", name="ViT-B-32", model_kwargs=TINY_OPEN_CLIP_VIT),
    "open_clip-rn": ImageEncoderConfig(
        source="open_clip", name="RN50", model_kwargs={"layers": [1, 1, 1, 1], "width": 16}
    ),
}
EXPECTED_TOKENS = {  # N for 64x64 inputs
    "cnn": 64,
    "cnn-grid4": 16,
    "timm-resnet10t": 4,
    "timm-vit": 16,
    "open_clip-vit": 16,
    "open_clip-rn": 4,
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny models run as fast on one thread, and several times faster when other jobs share the CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _images(config: ImageEncoderConfig, batch: int = 2) -> torch.Tensor:
    """Images in [0, 1], as the encoder takes them."""
    size = config.image_size
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))


def _normalised(encoder: ImageEncoder, images: torch.Tensor) -> torch.Tensor:
    """What the underlying library model sees."""
    return (images - encoder.mean) / encoder.std


def _save(state_dict: dict[str, torch.Tensor], path: Path) -> str:
    state_dict = {k: v.detach().clone().contiguous() for k, v in state_dict.items()}
    if path.suffix == ".safetensors":
        save_file(state_dict, path)
    else:  # a training checkpoint: nested and DDP-prefixed
        torch.save({"state_dict": {f"module.{k}": v for k, v in state_dict.items()}}, path)
    return str(path)


@pytest.mark.parametrize("key", CONFIGS)
def test_forward_shape_and_every_parameter_gets_a_gradient(key: str) -> None:
    encoder = ImageEncoder(CONFIGS[key])
    out = encoder(_images(encoder.config))  # (2, N, D)
    assert encoder.num_tokens == EXPECTED_TOKENS[key]
    assert out.shape == (2, encoder.num_tokens, encoder.feature_dim)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    trainable = [(name, p) for name, p in encoder.named_parameters() if p.requires_grad]
    assert trainable
    no_grad = [name for name, p in trainable if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not no_grad, f"parameters without a finite gradient: {no_grad}"


@pytest.mark.parametrize("key", ["cnn", "timm-resnet10t", "open_clip-vit"])
def test_frozen_has_no_gradients_and_stays_in_eval(key: str) -> None:
    config = CONFIGS[key]
    encoder = ImageEncoder(ImageEncoderConfig(**{**vars(config), "frozen": True}))
    encoder.train()
    assert not encoder.training and not any(m.training for m in encoder.modules())
    assert not any(p.requires_grad for p in encoder.parameters())
    first = encoder(_images(config))
    assert not first.requires_grad
    assert_close(encoder(_images(config)), first)  # eval mode: deterministic, batch-independent norms


def test_cnn_is_small() -> None:
    encoder = ImageEncoder(CONFIGS["cnn"])
    assert 0.3e6 <= sum(p.numel() for p in encoder.parameters()) <= 1e6
    assert (encoder.num_tokens, encoder.feature_dim) == (64, 128)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_cnn_loads_its_own_weights(tmp_path: Path, suffix: str) -> None:
    source = ImageEncoder(CONFIGS["cnn"]).eval()
    path = _save(source.model.state_dict(), tmp_path / f"cnn{suffix}")
    loaded = ImageEncoder(ImageEncoderConfig(pretrained_path=path)).eval()
    images = _images(source.config)
    assert_close(loaded(images), source(images))


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_timm_loads_a_full_classifier_checkpoint(tmp_path: Path, suffix: str) -> None:
    source = timm.create_model("resnet10t", pretrained=False, num_classes=7).eval()  # head keys are ignored
    path = _save(source.state_dict(), tmp_path / f"resnet{suffix}")
    encoder = ImageEncoder(ImageEncoderConfig(source="timm", name="resnet10t", pretrained_path=path)).eval()
    images = _images(encoder.config)
    expected = source.forward_features(_normalised(encoder, images)).flatten(2).transpose(1, 2)  # (B, H*W, C)
    assert_close(encoder(images), expected)


def test_timm_vit_loads_at_native_size_and_resamples_positions(tmp_path: Path) -> None:
    source = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=1).eval()
    path = _save(source.state_dict(), tmp_path / "vit.safetensors")
    native = ImageEncoderConfig(
        source="timm",
        name="vit_tiny_patch16_224",
        image_size=224,
        model_kwargs={"depth": 1},
        pretrained_path=path,
    )
    encoder = ImageEncoder(native).eval()
    images = _images(native, batch=1)
    assert_close(
        encoder(images), source.forward_features(_normalised(encoder, images))[:, 1:]
    )  # class token dropped
    small = ImageEncoder(ImageEncoderConfig(**{**vars(native), "image_size": 64}))
    assert small(_images(small.config)).shape == (2, 16, 192)


def test_open_clip_loads_a_full_clip_checkpoint(tmp_path: Path) -> None:
    base_cfg = open_clip.get_model_config("ViT-B-32")["vision_cfg"]
    vision_cfg = {**base_cfg, **TINY_OPEN_CLIP_VIT, "image_size": 64}
    source = open_clip.create_model("ViT-B-32", vision_cfg=vision_cfg, text_cfg=TINY_TEXT_CFG).eval()
    path = _save(source.state_dict(), tmp_path / "clip.safetensors")  # with text tower, visual.proj, ...
    config = ImageEncoderConfig(**{**vars(CONFIGS["open_clip-vit"]), "pretrained_path": path})
    encoder = ImageEncoder(config).eval()
    images = _images(config)
    out = source.visual.forward_intermediates(
        _normalised(encoder, images), indices=1, normalize_intermediates=True, intermediates_only=True
    )
    assert_close(encoder(images), out["image_intermediates"][-1].flatten(2).transpose(1, 2))
    bigger = ImageEncoder(ImageEncoderConfig(**{**vars(config), "image_size": 96}))  # positions resampled
    assert bigger.num_tokens == 36


def test_checkpoint_that_does_not_fit_names_the_keys(tmp_path: Path) -> None:
    state = ImageEncoder(CONFIGS["cnn"]).model.state_dict()
    state["extra.weight"] = state.pop("pos_embed")
    path = _save(state, tmp_path / "bad.safetensors")
    expected = r"1 missing keys \['pos_embed'\].*1 unexpected keys \['extra.weight'\]"
    with pytest.raises(ValueError, match=expected):
        ImageEncoder(ImageEncoderConfig(pretrained_path=path))


def test_missing_checkpoint_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.safetensors")
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        ImageEncoder(ImageEncoderConfig(source="timm", name="resnet10t", pretrained_path=path))


@pytest.mark.parametrize(("source", "name"), [("timm", "resnet_not_a_model"), ("open_clip", "ViT-Q-99")])
def test_unknown_model_name(source: str, name: str) -> None:
    with pytest.raises(ValueError, match=f"{name}.*unknown to {source}"):
        ImageEncoderConfig(source=source, name=name)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"source": "cnn", "name": "resnet18"}, "meant .timm. or .open_clip."),
        ({"source": "cnn", "cnn_grid": 6}, "power of two"),
        ({"source": "cnn", "cnn_width": 20}, "multiple of 8"),
        ({"source": "timm", "name": ""}, "needs a model name"),
        ({"source": "timm", "name": "vit_tiny_patch16_224", "model_kwargs": {"img_size": 64}}, "image_size"),
        ({"source": "open_clip", "name": "ViT-B-32", "model_kwargs": {"depth": 1}}, "vision_cfg"),
        ({"source": "vq"}, "source must be"),
        ({"mean": (0.5, 0.5, 0.5)}, "together"),
    ],
)
def test_config_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ImageEncoderConfig(**kwargs)


def test_timm_rejected_kwargs_are_a_value_error() -> None:
    with pytest.raises(ValueError, match="rejected model_kwargs"):
        ImageEncoder(ImageEncoderConfig(source="timm", name="resnet10t", model_kwargs={"depth": 2}))


def test_forward_validates_images() -> None:
    encoder = ImageEncoder(CONFIGS["cnn"])
    with pytest.raises(ValueError, match="expected images"):
        encoder(torch.zeros(1, 4, 32, 32))
    with pytest.raises(ValueError, match="float"):
        encoder(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize(
    "shape", [(1, 1), (20, 30), (90, 17), (40, 300)], ids=["1x1", "small", "tall", "wide"]
)
def test_any_input_size_is_resized_and_shift_only_while_training(shape: tuple[int, int], train: bool) -> None:
    encoder = ImageEncoder(ImageEncoderConfig(augment_shift=4, cnn_width=8, cnn_grid=4)).train(train)
    out = encoder(torch.rand(2, 3, *shape))
    assert out.shape == (2, encoder.num_tokens, encoder.feature_dim) and torch.isfinite(out).all()
    images = torch.rand(2, 3, 64, 64)
    same = torch.equal(encoder(images), encoder(images))
    assert same is (not train)  # eval is deterministic; training shifts at random


def test_encoder_normalises_with_its_own_statistics() -> None:
    encoder = ImageEncoder(
        ImageEncoderConfig(cnn_width=8, cnn_grid=4, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    )
    seen = {}
    encoder.model.register_forward_pre_hook(lambda module, args: seen.setdefault("x", args[0]))
    encoder(torch.ones(1, 3, 64, 64))
    assert_close(seen["x"], torch.ones(1, 3, 64, 64))  # (1 - 0.5) / 0.5


@pytest.mark.parametrize("source", ["cnn", "timm"])
def test_value_channel_feeds_max_rgb_as_a_fourth_channel(source: str) -> None:
    name = "resnet10t" if source == "timm" else ""
    stats = {"mean": (0.5,) * 3, "std": (0.25,) * 3}
    config = ImageEncoderConfig(source=source, name=name, value_channel=True, **stats)
    encoder = ImageEncoder(config).eval()
    seen = {}
    first_conv = next(m for m in encoder.model.modules() if isinstance(m, torch.nn.Conv2d))
    first_conv.register_forward_pre_hook(lambda module, args: seen.setdefault("x", args[0]))
    red, blue = torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64)
    red[:, 0, 8:24, 8:24], blue[:, 2, 8:24, 8:24] = 1.0, 1.0  # one square, two colours
    out = encoder(torch.cat([red, blue]))
    assert out.shape == (2, encoder.num_tokens, encoder.feature_dim)
    assert seen["x"].shape == (2, 4, 64, 64)
    assert_close(seen["x"][0, 3], seen["x"][1, 3])  # the value channel is blind to the hue
    assert_close(seen["x"][0, 3, 16, 16], torch.tensor(2.0))  # (1 - 0.5) / 0.25
    assert_close(seen["x"][:, :3], (torch.cat([red, blue]) - 0.5) / 0.25)


def test_value_channel_loads_an_rgb_checkpoint_unchanged_at_start(tmp_path: Path) -> None:
    rgb = ImageEncoder(ImageEncoderConfig(source="timm", name="resnet10t")).eval()
    path = _save(rgb.model.state_dict(), tmp_path / "rgb.safetensors")
    config = ImageEncoderConfig(source="timm", name="resnet10t", pretrained_path=path, value_channel=True)
    encoder = ImageEncoder(config).eval()  # the value channel's first-conv kernel starts at zero
    images = _images(encoder.config)
    assert_close(encoder(images), rgb(images))
    resaved = _save(encoder.model.state_dict(), tmp_path / "rgbv.safetensors")  # its own 4-channel weights
    assert_close(ImageEncoder(replace(config, pretrained_path=resaved)).eval()(images), encoder(images))
    gray = ImageEncoder(replace(config, value_channel=False, chroma_width=4))  # the value map alone
    first = next(m for m in gray.model.modules() if isinstance(m, torch.nn.Conv2d))
    kernel = next(v for k, v in rgb.model.state_dict().items() if k.endswith("weight"))  # (C, 3, k, k)
    assert_close(first.weight, kernel.sum(1, keepdim=True))  # what the RGB network computed on a gray image


@pytest.mark.parametrize("source", ["cnn", "timm"])
def test_chroma_width_splits_hue_from_structure(source: str) -> None:
    config = ImageEncoderConfig(source=source, name="resnet10t" if source == "timm" else "", chroma_width=8,
                                cnn_grid=4, model_kwargs={"output_stride": 16} if source == "timm" else {})
    encoder = ImageEncoder(config).eval()
    seen = {}
    first_conv = next(m for m in encoder.model.modules() if isinstance(m, torch.nn.Conv2d))
    first_conv.register_forward_pre_hook(lambda module, args: seen.setdefault("x", args[0]))
    red, blue = torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64)
    red[:, 0, 0:16, 0:8], blue[:, 2, 0:16, 0:8] = 1.0, 1.0  # a bar in the first 16 x 16 cell
    red_square = torch.zeros(1, 3, 64, 64)
    red_square[:, 0, 0:8, 0:16] = 1.0  # the same red pixels of that cell, another shape
    out = encoder(torch.cat([red, blue, red_square]))
    width = encoder.feature_dim - 8
    assert out.shape == (3, encoder.num_tokens, width + 8) and seen["x"].shape == (3, 1, 64, 64)
    assert_close(out[0, :, :width], out[1, :, :width])  # the network is blind to the hue
    assert not torch.allclose(out[0, :, width:], out[1, :, width:])  # the colour path is not
    assert_close(out[0, :, width:], out[2, :, width:])  # ... and blind to the shape within a cell


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"source": "open_clip", "name": "ViT-B-32", "value_channel": True},
         "value_channel and chroma_width"),
        ({"source": "cnn", "chroma_width": 8, "value_channel": True}, "excludes value_channel"),
        ({"source": "cnn", "chroma_width": -1}, "chroma_width must be >= 0"),
        ({"source": "timm", "name": "resnet10t", "model_kwargs": {"in_chans": 4}}, "value_channel"),
    ],
)
def test_value_channel_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ImageEncoderConfig(**kwargs)


def test_mean_std_follow_the_library() -> None:
    imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert image_mean_std(CONFIGS["timm-resnet10t"]) == imagenet
    siglip = ImageEncoderConfig(source="open_clip", name="ViT-B-16-SigLIP")
    assert image_mean_std(siglip) == ((0.5,) * 3, (0.5,) * 3)
    assert image_mean_std(CONFIGS["open_clip-vit"])[0] == tuple(open_clip.OPENAI_DATASET_MEAN)
    override = ImageEncoderConfig(mean=(0.1, 0.2, 0.3), std=(1.0, 1.0, 1.0))
    assert image_mean_std(override) == ((0.1, 0.2, 0.3), (1.0, 1.0, 1.0))
