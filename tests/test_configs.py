"""Every shipped YAML config instantiates and runs a couple of training steps through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from configs_shrink import shrink_config

from anytoken.cli import main

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_there_are_configs():
    assert CONFIGS, "no configs/*.yaml found"


def _user_data_paths(config: Path) -> list[str]:
    """``data/...`` paths a config expects the user to provide (real datasets are never downloaded)."""
    import yaml

    found: list[str] = []

    def walk(value):
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, str) and value.startswith("data/"):
            found.append(value)

    walk(yaml.safe_load(config.read_text()))
    return found


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_config_fits(config, tmp_path):
    missing = [p for p in _user_data_paths(config) if not (config.parents[1] / p).exists()]
    if missing:
        pytest.skip(
            f"{config.name} reads user data ({missing[0]}, ...); its format runs on a fixture in tests/tasks"
        )
    main(["fit", "--config", str(shrink_config(config, tmp_path))])


def test_help_works(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--help"])
    assert exit_info.value.code == 0
    assert "--config" in capsys.readouterr().out


FROM_CAPTIONER = [c for c in CONFIGS if "_from_captioner" in c.stem]


def test_there_are_configs_that_start_from_the_captioner():
    names = {c.stem for c in FROM_CAPTIONER}
    assert names >= {"vqa_scenes_from_captioner", "vqa_scenes_from_captioner_classify"}


@pytest.mark.parametrize("config", FROM_CAPTIONER, ids=[c.stem for c in FROM_CAPTIONER])
def test_a_config_that_starts_from_a_model_has_that_models_architecture(config):
    import yaml

    root = CONFIGS[0].parent
    model = yaml.safe_load(config.read_text())["model"]["init_args"]
    captioner = yaml.safe_load((root / "caption_scenes.yaml").read_text())
    source = captioner["model"]["init_args"]
    assert model["init_from"] == captioner["trainer"]["callbacks"][1]["init_args"]["dirpath"]  # its release
    for key in ("backbone", "projector", "mask"):
        assert model[key] == source[key], key
    frozen = {"frozen": False}  # whether the encoder trains on is the new model's own choice
    assert model["image_encoder"] | frozen == source["image_encoder"] | frozen


def test_the_classification_config_from_the_captioner_differs_only_in_its_head_steps_and_paths():
    import yaml

    root = CONFIGS[0].parent
    generate = yaml.safe_load((root / "vqa_scenes_from_captioner.yaml").read_text())
    text = (root / "vqa_scenes_from_captioner_classify.yaml").read_text()
    classify = yaml.safe_load(text.replace("from_captioner_classify", "from_captioner"))
    for config in (generate, classify):
        for key in ("head", "pooling", "decoding"):
            config["model"]["init_args"].pop(key, None)
        for key in ("max_steps", "val_check_interval"):
            config["trainer"].pop(key)
    assert classify == generate


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_a_new_fit_replaces_last_ckpt(config):
    """The README tests ``checkpoints/last.ckpt``: a second fit must overwrite it, not write last-v1.ckpt and
    leave the stale one for ``anytoken test`` to read."""
    import yaml

    callbacks = yaml.safe_load(config.read_text())["trainer"].get("callbacks") or []
    for callback in callbacks:
        if callback["class_path"].endswith("ModelCheckpoint") and callback["init_args"].get("save_last"):
            assert callback["init_args"].get("enable_version_counter") is False, config.name
