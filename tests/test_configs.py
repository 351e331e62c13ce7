"""Every shipped YAML config instantiates and runs a couple of training steps through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from configs_shrink import shrink_config

from anytoken.cli import main

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_there_are_configs():
    assert CONFIGS, "no configs/*.yaml found"


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_config_fits(config, tmp_path):
    main(["fit", "--config", str(shrink_config(config, tmp_path))])


def test_help_works(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--help"])
    assert exit_info.value.code == 0
    assert "--config" in capsys.readouterr().out
