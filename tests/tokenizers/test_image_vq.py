"""The image VQ tokenizer: shapes and ranges, bad input, save/load, gradients, training, files and CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anytoken.cli import main
from anytoken.tokenizers import Tokenizer, create_tokenizer
from anytoken.tokenizers.image_vq import ImageVQConfig, ImageVQTokenizer

TINY = dict(
    image_size=16,
    downsample=4,
    channels=8,
    encoder_channels=8,
    channel_mult=[1, 1],
    codebook_size=32,
    latent_dim=4,
)


def tiny(**overrides: object) -> ImageVQTokenizer:
    torch.manual_seed(0)
    return ImageVQTokenizer(**{**TINY, **overrides})


def blobs(n: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    """Smooth random images ``[n, 3, size, size]`` in ``[0, 1]``."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    return torch.nn.functional.interpolate(low, size=size, mode="bilinear", align_corners=False).clamp(0, 1)


@pytest.mark.parametrize("quantizer", ["vq", "fsq"])
def test_encode_decode_shapes_and_ranges(quantizer: str) -> None:
    tok = tiny(quantizer=quantizer, fsq_levels=[4, 4, 2]).eval()
    ids = tok.encode(blobs(3))
    assert ids.shape == (3, 4, 4) and ids.dtype == torch.long
    assert 0 <= int(ids.min()) and int(ids.max()) < tok.vocab_size
    images = tok.decode(ids)
    assert images.shape == (3, 3, 16, 16) and 0 <= float(images.min()) and float(images.max()) <= 1
    assert tok.decode(ids[0]).shape == (1, 3, 16, 16)  # one [h, w] grid
    torch.testing.assert_close(tok.decode(ids.view(3, 16)), images)  # flat, as generation emits them
    assert tok.grammar().min_length == tok.grammar().max_length == 16
    assert tok.grammar().steps == (((0, tok.vocab_size),),)


def test_accepts_pil_lists_single_images_and_resizes_by_policy() -> None:
    tok = tiny().eval()
    pil = Image.fromarray((np.random.default_rng(0).random((20, 30, 3)) * 255).astype(np.uint8))
    assert tok.encode(pil).shape == (1, 4, 4)
    assert tok.encode([pil, pil.convert("L")]).shape == (2, 4, 4)
    assert tok.encode(blobs(1)[0]).shape == (1, 4, 4)  # [3, H, W]
    assert tok.encode(blobs(2, size=40)).shape == (2, 4, 4)  # resized + centre-cropped
    # the policy: a 16 x 32 image keeps its centre 16 x 16
    wide = torch.cat([torch.zeros(1, 3, 16, 8), blobs(1), torch.ones(1, 3, 16, 8)], dim=-1)
    assert torch.equal(tok.encode(wide), tok.encode(blobs(1)))


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (torch.rand(2, 3, 16, 16) * 2, r"\[0, 1\]"),
        (torch.full((1, 3, 16, 16), float("nan")), "finite"),
        (torch.randint(0, 255, (1, 3, 16, 16), dtype=torch.uint8), "float"),
        (torch.rand(2, 4, 16, 16), r"\[B, 3, H, W\]"),
        ([], "non-empty"),
        ("photo.png", "float"),
    ],
)
def test_encode_rejects_bad_input(bad: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        tiny().encode(bad)


def test_decode_rejects_bad_ids() -> None:
    tok = tiny()
    with pytest.raises(ValueError, match=r"\[0, 32\)"):
        tok.decode(torch.full((1, 4, 4), 32))
    with pytest.raises(ValueError, match=r"\[0, 32\)"):
        tok.decode(torch.full((1, 4, 4), -1))
    with pytest.raises(ValueError, match="4 x 4"):
        tok.decode(torch.zeros(1, 3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="4 x 4"):
        tok.decode(torch.zeros(15, dtype=torch.long))
    with pytest.raises(ValueError, match="integers"):
        tok.decode(torch.zeros(1, 4, 4))


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="downsample"):
        ImageVQConfig(image_size=64, downsample=6)
    with pytest.raises(ValueError, match="channel_mult"):
        ImageVQConfig(image_size=64, downsample=8, channel_mult=[1, 2])
    with pytest.raises(ValueError, match="perceptual_path"):
        ImageVQConfig(perceptual_weight=1.0)
    with pytest.raises(ValueError, match="quantizer"):
        ImageVQConfig(quantizer="lfq")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="loss weights"):
        ImageVQConfig(quantizer="fsq", fsq_entropy_weight=-0.1)


def test_save_load_gives_identical_tokens_and_drops_training_only_parts(tmp_path: Path) -> None:
    tok = tiny(disc_weight=0.1, disc_layers=1)
    tok.train()
    tok.loss(blobs(8))  # initialise the codebook from data
    tok.eval()
    tok.save_pretrained(tmp_path / "tok")
    loaded = Tokenizer.from_pretrained(tmp_path / "tok")
    assert isinstance(loaded, ImageVQTokenizer) and loaded.discriminator is None
    x = blobs(4, seed=1)
    assert torch.equal(loaded.encode(x), tok.encode(x))
    torch.testing.assert_close(loaded.decode(tok.encode(x)), tok.decode(tok.encode(x)))
    assert isinstance(create_tokenizer("image_vq", **TINY), ImageVQTokenizer)


@pytest.mark.parametrize("quantizer", ["vq", "fsq"])
def test_gradient_reaches_every_parameter(quantizer: str) -> None:
    tok = tiny(quantizer=quantizer, fsq_levels=[4, 4, 2], disc_weight=0.5, disc_layers=1)
    tok.train()
    x = blobs(4)
    out = tok.loss(x, step=0)
    out.loss.backward()
    tokenizer_params = {n: p for n, p in tok.named_parameters() if not n.startswith("discriminator.")}
    assert tokenizer_params and all(
        p.grad is not None and p.grad.abs().sum() > 0 for p in tokenizer_params.values()
    )
    assert all(p.grad is None for p in tok.discriminator.parameters())  # the generator step leaves D alone
    tok.discriminator_loss(x, out.reconstruction).backward()
    assert all(p.grad is not None for p in tok.discriminator.parameters())
    assert {"l1", "mse", "adversarial", "batch_usage", "perplexity"} <= set(out.metrics)


def test_reconstruction_error_falls_with_training() -> None:
    tok = tiny(codebook_size=64, vq_dead_threshold=0.5)
    opt = torch.optim.Adam(tok.parameters(), lr=5e-3)
    x = blobs(8)
    tok.eval()
    before = tok.reconstruction_error(x)
    tok.train()
    for _ in range(25):
        opt.zero_grad()
        tok.loss(x).loss.backward()
        opt.step()
    tok.eval()
    after = tok.reconstruction_error(x)
    assert after < 0.5 * before
    metrics = tok.reconstruction_metrics(x, tok.decode(tok.encode(x)))
    assert metrics["psnr"] > 12 and 0 < metrics["ssim"] <= 1


def test_perceptual_loss_from_a_local_file(tmp_path: Path) -> None:
    from safetensors.torch import save_file
    from torchvision.models import vgg16

    torch.manual_seed(0)
    features = vgg16().features[:30]
    save_file(
        {f"features.{k}": v for k, v in features.state_dict().items()}, str(tmp_path / "vgg16.safetensors")
    )
    tok = tiny(perceptual_weight=0.5, perceptual_path=str(tmp_path / "vgg16.safetensors"))
    tok.train()
    out = tok.loss(blobs(2))
    assert out.metrics["perceptual"] > 0 and not tok.perceptual.training
    assert not any(p.requires_grad for p in tok.perceptual.parameters())
    tok.save_pretrained(tmp_path / "tok")  # the VGG stays out of the export
    assert Tokenizer.from_pretrained(tmp_path / "tok").perceptual is None


def test_media_files_and_cli_round_trip(tmp_path: Path) -> None:
    tok = tiny().eval()
    tok.save_pretrained(tmp_path / "tok")
    image = (blobs(1, size=24)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "in.png")
    main(
        [
            "encode",
            str(tmp_path / "in.png"),
            "--tokenizer",
            str(tmp_path / "tok"),
            "-o",
            str(tmp_path / "t.npy"),
        ]
    )
    ids = np.load(tmp_path / "t.npy")
    assert ids.shape == (1, 4, 4) and ids.dtype == np.int64
    main(
        [
            "decode",
            str(tmp_path / "t.npy"),
            "--tokenizer",
            str(tmp_path / "tok"),
            "-o",
            str(tmp_path / "out.png"),
        ]
    )
    assert Image.open(tmp_path / "out.png").size == (16, 16)
    assert torch.equal(torch.from_numpy(ids), tok.encode(tok.read_media(tmp_path / "in.png")))
    tok.write_media(tok.decode(torch.from_numpy(ids).repeat(3, 1, 1)), tmp_path / "grid.png")  # a grid of 3
    assert Image.open(tmp_path / "grid.png").size[0] > 3 * 16


def test_cli_rejects_bad_files_without_partial_output(tmp_path: Path) -> None:
    tiny().save_pretrained(tmp_path / "tok")
    np.save(tmp_path / "big.npy", np.full((1, 4, 4), 99))
    np.save(tmp_path / "grid.npy", np.zeros((1, 3, 3), dtype=np.int64))
    for name, match in (("big.npy", "must lie in"), ("grid.npy", "4 x 4")):
        with pytest.raises(SystemExit, match=match):
            main(
                [
                    "decode",
                    str(tmp_path / name),
                    "--tokenizer",
                    str(tmp_path / "tok"),
                    "-o",
                    str(tmp_path / "o.png"),
                ]
            )
    (tmp_path / "notes.png").write_text("not an image")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "full.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "full.png").read_bytes()[:60])
    for name, match in (("notes.png", "not a readable image"), ("cut.png", "truncated or corrupt")):
        with pytest.raises(SystemExit, match=match):
            main(
                [
                    "encode",
                    str(tmp_path / name),
                    "--tokenizer",
                    str(tmp_path / "tok"),
                    "-o",
                    str(tmp_path / "o.npy"),
                ]
            )
    assert not list(tmp_path.glob("o.*")) and not list(tmp_path.glob(".o.*"))
