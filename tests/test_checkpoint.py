"""The one loader: releases and ``.ckpt`` files load without Lightning, and every hostile, corrupt, truncated,
foreign or mismatched file gives one clear error naming the file; nothing a file names is ever called."""

from __future__ import annotations

import json
import os
import random
import shutil

import pytest
import torch

import anytoken
from anytoken.backbone import TransformerConfig
from anytoken.checkpoint import MODEL_KEY, PREFIX
from anytoken.tokenizers import MuLawTokenizer, Tokenizer
from anytoken.tokenizers.image_encoder import ImageEncoderConfig
from anytoken.tokenizers.space import TokenSpace, Vocab


def _model(bpe, d_model: int = 32) -> anytoken.AnytokenModel:
    space = TokenSpace({"text": bpe.vocab_size, "image": 0}, tasks=("caption",))
    return anytoken.AnytokenModel(
        Vocab(space, {"text": bpe}).to_dict(), formats={"caption": {"kind": "caption"}},
        backbone=TransformerConfig.from_name("tiny", d_model=d_model, max_seq_len=48),
        image_encoder=ImageEncoderConfig(source="cnn", image_size=16, cnn_width=8, cnn_grid=2),
    ).eval()


@pytest.fixture
def release(tmp_path, bpe):
    return _model(bpe).save_pretrained(tmp_path / "release")


def _ckpt(model, path):
    """What a task's checkpoint holds for the loader: the model's config and its prefixed weights."""
    state = {PREFIX + k: v for k, v in model.state_dict().items()}
    torch.save({MODEL_KEY: model.config(), "state_dict": state, "hyper_parameters": {}}, path)
    return path


def test_release_and_ckpt_load_to_the_same_model(tmp_path, bpe, release):
    model = _model(bpe)
    images = torch.rand(2, 3, 16, 16)
    from_ckpt = anytoken.load(_ckpt(anytoken.load(release), tmp_path / "m.ckpt"))
    assert anytoken.load(release).caption(images) == from_ckpt.caption(images)
    assert set(anytoken.load(release).state_dict()) == set(model.state_dict())


class _Evil:
    def __reduce__(self):
        return os.system, ("touch PWNED",)


def _hostile_ckpts(tmp_path, bpe):
    """Each file and what its error must say."""
    good = _ckpt(_model(bpe), tmp_path / "good.ckpt")
    cases = {}
    cases["os_system_class.ckpt"] = (
        {"anytoken_class": "os.system", "hyper_parameters": {"command": "touch PWNED"}, "state_dict": {}},
        "not an anytoken model checkpoint",
    )
    config = _model(bpe).config()
    cases["format_names_a_function.ckpt"] = (
        {MODEL_KEY: config | {"formats": {"x": {"kind": "os.system", "command": "touch PWNED"}}},
         "state_dict": {}}, "unknown task format 'os.system'")
    cases["config_names_a_class.ckpt"] = (
        {MODEL_KEY: {"class_path": "os.system", "init_args": {"command": "touch PWNED"}}, "state_dict": {}},
        "cannot build the model")
    cases["unknown_hyperparameter.ckpt"] = (
        {MODEL_KEY: config | {"no_such_option": 1}, "state_dict": {}}, "no_such_option")
    cases["not_a_dict.ckpt"] = ([1, 2, 3], "holds a list")
    other = {PREFIX + k: v for k, v in _model(bpe, d_model=64).state_dict().items()}
    cases["other_weights.ckpt"] = ({MODEL_KEY: config, "state_dict": other}, "do not fit this AnytokenModel")
    for name, (content, _) in cases.items():
        torch.save(content, tmp_path / name)
    torch.save(_Evil(), tmp_path / "pickled_call.ckpt")
    (tmp_path / "empty.ckpt").write_bytes(b"")
    for seed in range(8):  # random bytes fail in many ways inside torch.load: each must read as unreadable
        (tmp_path / f"random{seed}.ckpt").write_bytes(random.Random(seed).randbytes(4096))
    (tmp_path / "truncated.ckpt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    errors = {name: match for name, (_, match) in cases.items()}
    unreadable = "not a readable checkpoint"
    randoms = {f"random{seed}.ckpt": unreadable for seed in range(8)}
    return errors | randoms | {"pickled_call.ckpt": unreadable, "empty.ckpt": "empty file",
                               "truncated.ckpt": unreadable}


def test_hostile_and_broken_ckpt_files_give_one_clear_error(tmp_path, bpe, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, match in _hostile_ckpts(tmp_path, bpe).items():
        with pytest.raises(anytoken.LoadError, match=match) as err:
            anytoken.load(tmp_path / name)
        assert name in str(err.value) and "\n" not in str(err.value), name
    assert not (tmp_path / "PWNED").exists()


def _broken_releases(tmp_path, release, bpe):
    """Release directories broken one way each, and what their error must say."""
    def copy(name):
        return shutil.copytree(release, tmp_path / name)

    cases = {}
    weights = (copy("truncated_weights") / "model.safetensors")
    weights.write_bytes(weights.read_bytes()[:100])
    cases["truncated_weights"] = "not a readable weights file"
    config = json.loads((release / "config.json").read_text())
    for name, edit, match in [
        ("config_names_a_function", {"formats": {"x": {"kind": "builtins.eval"}}}, "unknown task format"),
        ("unknown_hyperparameter", {"no_such_option": 1}, "no_such_option"),
        ("bad_tokenizer_spec", {"vocab": config["model"]["vocab"] | {"tokenizers": {"text": {"x": 1}}}},
         "tokenizer spec"),
    ]:
        (copy(name) / "config.json").write_text(json.dumps(config | {"model": config["model"] | edit}))
        cases[name] = match
    (copy("old_format") / "config.json").write_text(json.dumps(
        {"format_version": 1, "class_path": "os.system", "init_args": {"command": "touch PWNED"}}))
    cases["old_format"] = "format_version 1"
    (copy("not_json") / "config.json").write_text("{not json")
    cases["not_json"] = "not a readable JSON file"
    other = _model(bpe, d_model=64).save_pretrained(tmp_path / "other")
    shutil.copy(other / "model.safetensors", copy("another_models_weights") / "model.safetensors")
    cases["another_models_weights"] = "do not fit this AnytokenModel"
    return cases


def test_broken_releases_give_one_clear_error(tmp_path, bpe, release, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, match in _broken_releases(tmp_path, release, bpe).items():
        with pytest.raises(anytoken.LoadError, match=match) as err:
            anytoken.load(tmp_path / name)
        assert name in str(err.value) and "\n" not in str(err.value), name
    assert not (tmp_path / "PWNED").exists()
    (shutil.copytree(release, tmp_path / "no_weights") / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no_weights"):
        anytoken.load(tmp_path / "no_weights")


def test_cli_reports_a_bad_checkpoint_in_one_line(tmp_path, bpe, monkeypatch):
    from PIL import Image

    from anytoken.cli import main

    monkeypatch.chdir(tmp_path)
    errors = _hostile_ckpts(tmp_path, bpe)
    Image.new("RGB", (16, 16)).save(tmp_path / "x.png")
    for command in (["caption", "x.png"], ["vqa", "x.png", "what?"], ["export", "-o", "out"]):
        for name in ("os_system_class.ckpt", "pickled_call.ckpt", "truncated.ckpt"):
            with pytest.raises(SystemExit) as exit_:
                main([*command, "--ckpt", str(tmp_path / name)])
            message = str(exit_.value.code)
            assert message.startswith(f"anytoken {command[0]}: ") and name in message and "\n" not in message
            assert errors[name].split()[0] in message
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "out").exists()


def test_tokenizer_directories_fail_cleanly(tmp_path):
    MuLawTokenizer().save_pretrained(tmp_path / "good")
    meta = json.loads((tmp_path / "good" / "tokenizer_config.json").read_text())
    for name, edit, match in [
        ("unknown_key", {"config": {"no_such_key": 1}}, "bad config"),
        ("wrong_type", {"config": {"bits": "eight"}}, "bad config"),
        ("unknown_name", {"tokenizer": "os.system"}, "unknown tokenizer 'os.system'"),
        ("config_not_a_dict", {"config": [1]}, "must be a dict"),
    ]:
        shutil.copytree(tmp_path / "good", tmp_path / name)
        (tmp_path / name / "tokenizer_config.json").write_text(json.dumps(meta | edit))
        with pytest.raises(anytoken.LoadError, match=match) as err:
            Tokenizer.from_pretrained(tmp_path / name)
        assert name in str(err.value)
    (tmp_path / "good" / "tokenizer_config.json").write_text("[]")
    with pytest.raises(anytoken.LoadError, match="expected a JSON object"):
        Tokenizer.from_pretrained(tmp_path / "good")


def test_a_tasks_own_decoding_travels_with_the_release(tmp_path, bpe):
    model = _model(bpe)
    spec = {"kind": "caption", "decoding": {"strategy": "greedy", "max_new_tokens": 2}}
    model = anytoken.AnytokenModel(**(model.config() | {"formats": {"caption": spec}}))
    loaded = anytoken.load(model.save_pretrained(tmp_path / "release"))
    assert loaded.config()["formats"]["caption"]["decoding"]["max_new_tokens"] == 2
    ids = loaded.generate(loaded.formats["caption"], {"images": torch.rand(2, 3, 16, 16)}, "text")
    assert all(len(i) <= 2 for i in ids)


def test_fit_from_a_hostile_init_from_exits_in_one_line(tmp_path, bpe, repo_root, monkeypatch):
    from configs_shrink import shrink_config

    from anytoken.cli import main

    monkeypatch.chdir(tmp_path)
    _hostile_ckpts(tmp_path, bpe)
    config = str(shrink_config(repo_root / "configs/caption_scenes.yaml", tmp_path))
    for name in ("os_system_class.ckpt", "pickled_call.ckpt"):
        with pytest.raises(SystemExit) as exit_:
            main(["fit", "--config", config, "--model.init_args.init_from", str(tmp_path / name)])
        message = str(exit_.value.code)
        assert message.startswith("anytoken fit: ") and name in message and "\n" not in message
    assert not (tmp_path / "PWNED").exists()
