"""Text-to-image: the judge, training, guided constrained generation, releases that carry the tokenizer."""

from __future__ import annotations

import shutil
from pathlib import Path

import lightning as L
import pytest
import torch

import anytoken
from anytoken.backbone import TransformerConfig
from anytoken.heads import DecodingConfig
from anytoken.tasks.data.synthetic.scenes import ScenesConfig, make_scenes
from anytoken.tasks.data.text_to_image import TextToImageDataModule
from anytoken.tasks.metrics.scenes import judge_scene, match
from anytoken.tasks.text_to_image import TextToImageModule
from anytoken.tokenizers.image_io import image_to_tensor
from anytoken.tokenizers.image_vq import ImageVQTokenizer

TINY_VQ = dict(
    image_size=32,
    downsample=8,
    channels=8,
    encoder_channels=8,
    channel_mult=[1, 1, 1],
    codebook_size=16,
    latent_dim=4,
)


def test_judge_reads_rendered_scenes_exactly() -> None:
    config = ScenesConfig(image_size=64, min_objects=1, max_objects=1)
    for scene in make_scenes("test", 60, config):
        obj = scene.objects[0]
        judged = judge_scene(image_to_tensor(scene.render(64), 64))
        assert match(judged, vars(obj))["all"] == 1.0, (judged, obj)
    assert judge_scene(torch.zeros(3, 64, 64)) is None
    assert match(None, vars(obj))["color"] == 0.0


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> TextToImageDataModule:
    path = tmp_path_factory.mktemp("t2i") / "vq"
    torch.manual_seed(0)
    ImageVQTokenizer(**TINY_VQ).save_pretrained(path)
    return TextToImageDataModule(
        str(path), num_train=32, num_val=8, num_test=8, num_heldout=8, bpe_vocab_size=300, batch_size=8
    )


def model(data: TextToImageDataModule, **kw: object) -> TextToImageModule:
    args = dict(
        backbone=TransformerConfig.from_name("tiny", max_seq_len=64),
        warmup_steps=2,
        decoding=DecodingConfig(strategy="sample", top_k=8, max_new_tokens=17, guidance_scale=2.0),
    )
    return TextToImageModule(data.vocab, **{**args, **kw})


def test_trains_generates_grids_and_reports_matches(data: TextToImageDataModule, tmp_path: Path) -> None:
    module = model(data)
    assert module.space.range("image").stop - module.space.range("image").start == 16
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=2,
        limit_val_batches=1,
        limit_test_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, data)
    results = trainer.test(module, data, verbose=False)
    assert {"test/match_all", "test/match_color", "test/loss"} <= set(results[0])
    assert {"heldout/match_shape"} <= set(results[1])
    images = module.model.draw(["a small red circle at the top left", "a large blue square in the center"])
    assert images.shape == (2, 3, 32, 32) and 0 <= float(images.min()) and float(images.max()) <= 1
    batch = next(iter(data.loader("val")))
    fmt = module.model.formats["text_to_image"]
    for ids in module.model.generate(fmt, batch, "image", DecodingConfig(max_new_tokens=17)):
        assert ids.shape == (16,) and int(ids.max()) < 16  # exactly the grid, inside the codebook
    evaluation = module.evaluations["text_to_image"]
    lines = evaluation.examples(evaluation.step(module.model, batch))
    assert len(lines) == len(batch["captions"]) and all(line[:4] in ("  ok", "  XX") for line in lines)


def test_tokenizer_is_frozen_and_travels_in_the_release(data: TextToImageDataModule, tmp_path: Path) -> None:
    module = model(data)
    assert not any(p.requires_grad for p in module.model.media_tokenizers.parameters())
    module.train()
    assert not module.model.media_tokenizers.training
    module.eval().export(tmp_path / "release")
    moved = tmp_path / "moved"
    shutil.copytree(data.image_tokenizer_path, moved)
    shutil.rmtree(data.image_tokenizer_path)  # the release alone must be enough
    try:
        loaded = anytoken.load(tmp_path / "release")
        ids = torch.randint(0, 16, (2, 4, 4))
        torch.testing.assert_close(
            loaded.media_tokenizers["image"].decode(ids), module.model.media_tokenizers["image"].decode(ids)
        )
        torch.manual_seed(1)
        a = loaded.draw(["a small red circle at the top left"])
        torch.manual_seed(1)
        b = module.model.draw(["a small red circle at the top left"])
        torch.testing.assert_close(a, b)
    finally:
        shutil.copytree(moved, data.image_tokenizer_path)


def test_bad_settings_fail_clearly(data: TextToImageDataModule, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_new_tokens must be >= 17"):
        model(data, decoding=DecodingConfig(max_new_tokens=8))
    with pytest.raises(ValueError, match="vq_image_scenes"):
        TextToImageDataModule(str(tmp_path / "missing"), num_train=4)
    with pytest.raises(ValueError, match="cond_dropout"):
        model(data, cond_dropout=1.0)


def test_captioning_from_vq_tokens(data: TextToImageDataModule) -> None:
    from anytoken.tasks.captioning import CaptioningModule
    from anytoken.tasks.data.captioning import CaptioningDataModule
    from anytoken.tokenizers.sequence import Tokens

    dm = CaptioningDataModule(
        num_train=16,
        num_val=4,
        num_test=4,
        num_heldout=4,
        bpe_vocab_size=300,
        image_size=32,
        batch_size=4,
        image_tokenizer=data.image_tokenizer_path,
    )
    assert dm.space.modalities["image"] == 16
    module = CaptioningModule(
        dm.vocab,
        backbone=TransformerConfig.from_name("tiny", max_seq_len=64),
        image_encoder=None,
        decoding=DecodingConfig(max_new_tokens=6),
    )
    batch = next(iter(dm.train_dataloader()))
    prefix = module.model.formats["caption"].samples(module.model, batch, targets=True)[0][1]
    assert (
        isinstance(prefix, Tokens) and prefix.modality == "image" and prefix.prefix and len(prefix.ids) == 16
    )
    loss = module.loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and module.model.backbone.embed.weight.grad is not None
    assert all(isinstance(c, str) for c in module.model.caption(batch["images"]))
