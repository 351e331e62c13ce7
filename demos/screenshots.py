"""Train small releases from the shipped configs, then take the screenshots of docs/demos.md.

    python -m demos.screenshots train [--root runs/demo_screens]    # from the repository root
    python -m demos.screenshots shoot [--root runs/demo_screens] [--out docs/img]

``train`` runs each config of ``TRAININGS`` (one after another, ``anytoken fit``) from a copy whose
``runs/`` paths point under ``--root``, for the few optimizer steps listed (the learning-rate schedule
follows them; ``MAX_MINUTES`` caps a run), with validation off and smaller built-in datasets where data
preparation would take longer than the training: the models have the shipped sizes, the quality of a
short CPU run. ``shoot`` serves every app on those releases and clicks through it in headless Chromium
(``demos/tours.py``), saving ``demo_NAME.png`` files. Needs the dev extra (selenium) and Debian's chromium
and chromium-driver.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
TRAININGS: dict[str, dict[str, Any]] = {  # config -> overrides (dotted keys): the step budget, smaller data
    "caption_scenes": {"trainer.max_steps": 420},  # as shipped
    "vqa_scenes_classify": {"trainer.max_steps": 200},
    "vq_image_scenes": {"trainer.max_steps": 200, "data.init_args.num_train": 6400},
    "text_to_image_scenes": {"trainer.max_steps": 200, "trainer.max_epochs": None,
                             "data.init_args.num_train": 6400},
    "codec_speech16k": {"trainer.max_steps": 100, "data.init_args.num_utterances": 100},
    "speech_tts": {"trainer.max_steps": 200, "data.init_args.num_train": 300},
    "table_generate_iris": {"trainer.max_steps": 400},  # as shipped
    "pose_stick_figures": {"trainer.max_steps": 200, "data.init_args.num_train": 6400},
    "forecast_motion": {"trainer.max_steps": 200, "data.init_args.num_train": 6400},
    "anything_tiny": {"trainer.max_steps": 200},
}
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
MAX_MINUTES = 12  # a cap on each run, data preparation included (Lightning's max_time)
TRAINER = {"limit_val_batches": 0, "enable_progress_bar": False,  # no validation: the steps train
           "max_time": f"00:00:{MAX_MINUTES:02d}:00"}


def _under(value: Any, root: Path) -> Any:
    """``value`` with every ``runs/...`` path moved under ``root``."""
    if isinstance(value, dict):
        return {k: _under(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [_under(v, root) for v in value]
    if isinstance(value, str) and value.startswith("runs/"):
        return str(root / value.removeprefix("runs/"))
    return value


def short_config(name: str, root: Path) -> Path:
    """Write ``configs/NAME.yaml`` with paths under ``root``, ``TRAINER`` and ``TRAININGS``' overrides to
    ``root/configs/NAME.yaml``; its path."""
    config = _under(yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text()), root)
    config["trainer"] |= TRAINER
    for dotted, value in TRAININGS[name].items():
        *path, key = dotted.split(".")
        node = config
        for part in path:
            node = node[part]
        node[key] = value
    out = root / "configs" / f"{name}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out


def train(root: Path) -> None:
    """``anytoken fit`` each of ``TRAININGS`` in turn (a failure stops the run); a config whose release or
    tokenizer is already under ``root`` is skipped (delete it to train it again)."""
    env = os.environ | OFFLINE
    for name in TRAININGS:
        if (root / name / "release").is_dir() or (root / name / "tokenizer").is_dir():
            print(f"--- {name}: already trained under {root}", flush=True)
            continue
        config = short_config(name, root)
        print(f"--- {name}: anytoken fit --config {config}", flush=True)
        subprocess.run([sys.executable, "-m", "anytoken.cli", "fit", "--config", str(config)], check=True,
                       cwd=REPO, env=env)


def shoot(root: Path, out: Path) -> list[Path]:
    """Serve each app on the releases under ``root``, take its tour in Chromium and save its pictures."""
    import importlib

    for name, value in OFFLINE.items():  # set before gradio is imported
        os.environ.setdefault(name, value)
    from demos import browser, tours
    from demos.widgets import launch

    release = {name: root / name / "release" for name in TRAININGS}
    apps = {
        "captioning": {"ckpt": release["caption_scenes"]},
        "vqa": {"ckpt": release["vqa_scenes_classify"]},
        "tokenizers": {"ckpt": release["caption_scenes"],
                       "tokenizer_dirs": [str(root / "vq_image_scenes" / "tokenizer"),
                                          str(root / "codec_speech16k" / "tokenizer")]},
        "generate": {"ckpt": [release[n] for n in ("text_to_image_scenes", "speech_tts",
                                                   "table_generate_iris", "pose_stick_figures",
                                                   "forecast_motion")]},
        "anything": {"ckpt": release["anything_tiny"]},
    }
    saved: list[Path] = []
    driver = browser.start_browser()
    try:
        for name, build in apps.items():
            app = importlib.import_module(f"demos.{name}").build_app(**build)
            try:
                browser.open_app(driver, launch(app, block=False))
                tours.TOURS[name](driver, lambda shot: saved.append(
                    browser.screenshot(driver, out / f"demo_{shot}.png", height=1700)))
            finally:
                app.close()
    finally:
        driver.quit()
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["train", "shoot"])
    parser.add_argument("--root", type=Path, default=REPO / "runs" / "demo_screens", help="where releases go")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img", help="where screenshots go")
    args = parser.parse_args()
    if args.step == "train":
        train(args.root.resolve())
    else:
        for path in shoot(args.root.resolve(), args.out):
            print(path)


if __name__ == "__main__":
    main()
