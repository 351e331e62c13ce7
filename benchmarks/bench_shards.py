"""Training throughput from token shards against on-the-fly encoding, on the same model and steps:
text-to-image (the VQ image tokenizer of configs/vq_image_scenes.yaml encodes rendered scenes in each
training step) and speech to text (a LibriSpeech-layout folder whose FLAC files the codec of
configs/codec_speech16k.yaml encodes as each batch is loaded). Models and batch sizes are those of
configs/text_to_image_scenes.yaml and configs/speech_stt.yaml; tokenizers are untrained (built from their
configs: same compute as trained ones, nothing to train first). One DataLoader process (num_workers 0), so
encoding runs in the step as it does on a machine without spare cores.

    python benchmarks/bench_shards.py [--steps 20] [--warmup 3] [--utterances 104] \
        [--out benchmarks/results/shards.json]

Prints a table (samples/s, s/step, speed-up, one-off tokenize time) and the load average, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml

from anytoken.tasks.data.formats.librispeech import write_librispeech
from anytoken.tasks.data.shard_writer import write_shards
from anytoken.tasks.data.speech import SpeechDataModule
from anytoken.tasks.data.synthetic.scenes import ScenesConfig
from anytoken.tasks.data.synthetic.spoken import spoken_scenes, synthesize_all
from anytoken.tasks.data.text_to_image import TextToImageDataModule
from anytoken.tasks.speech import SpeechToTextModule
from anytoken.tasks.text_to_image import TextToImageModule
from anytoken.tokenizers.base import tokenizer_from_spec

ROOT = Path(__file__).resolve().parent.parent


def config(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "configs" / name).read_text())


def save_tokenizer(config_name: str, path: Path) -> str:
    """The (untrained) tokenizer of a tokenizer-training config, saved to ``path``."""
    torch.manual_seed(0)
    tokenizer_from_spec(config(config_name)["model"]["init_args"]["tokenizer"]).save_pretrained(path)
    return str(path)


class StepTimer(L.Callback):
    """Wall time from the end of step ``warmup`` to the end of the last step (their data loading included)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end = warmup, 0.0, 0.0

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.end = time.perf_counter()


def seconds_per_step(data: L.LightningDataModule, module_type: type, model_args: dict[str, Any],
                     steps: int, warmup: int) -> float:
    """Mean training step time (after ``warmup`` steps) of ``module_type`` on ``data``, from seed 0."""
    L.seed_everything(0, verbose=False)
    module = module_type(data.vocab, **model_args)
    timer = StepTimer(warmup)
    trainer = L.Trainer(accelerator="cpu", max_steps=warmup + steps, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[timer])
    trainer.fit(module, data)
    return (timer.end - timer.start) / steps


def model_args(config_name: str) -> dict[str, Any]:
    """The model arguments of a task config, less what the CLI links (vocab)."""
    return dict(config(config_name)["model"]["init_args"])


def compare(name: str, make: Any, module_type: type, args: dict[str, Any], batch: int, shards: Path,
            steps: int, warmup: int) -> dict[str, Any]:
    """One task's row: ``make(shards=None | str)`` builds its DataModule, on the fly and from shards."""
    start = time.perf_counter()
    index = write_shards(make(None), shards, progress=False)
    tokenize_s = time.perf_counter() - start
    fly = seconds_per_step(make(None), module_type, args, steps, warmup)
    sharded = seconds_per_step(make(str(shards)), module_type, args, steps, warmup)
    return {"task": name, "batch_size": batch, "steps": steps, "samples_tokenized": index["num_samples"],
            "tokenize_s": tokenize_s, "on_the_fly_s_per_step": fly, "shards_s_per_step": sharded,
            "on_the_fly_samples_per_s": batch / fly, "shards_samples_per_s": batch / sharded,
            "speedup": fly / sharded}


def text_to_image(tmp: Path, steps: int, warmup: int) -> dict[str, Any]:
    vq = save_tokenizer("vq_image_scenes.yaml", tmp / "vq")
    data = config("text_to_image_scenes.yaml")["data"]["init_args"]
    batch = data["batch_size"]
    num_train = batch * (warmup + steps)  # one epoch: every sample is encoded once either way

    def make(shards: str | None) -> TextToImageDataModule:
        return TextToImageDataModule(vq, num_train=num_train, num_val=0, num_test=0, num_heldout=0,
                                     bpe_vocab_size=data["bpe_vocab_size"], batch_size=batch, shards=shards)

    return compare("text_to_image (VQ 8x8 of 64 px)", make, TextToImageModule,
                   model_args("text_to_image_scenes.yaml"), batch, tmp / "t2i_shards", steps, warmup)


def speech_to_text(tmp: Path, steps: int, warmup: int, utterances: int) -> dict[str, Any]:
    codec = save_tokenizer("codec_speech16k.yaml", tmp / "codec")
    data = config("speech_stt.yaml")["data"]["init_args"]
    spoken = spoken_scenes("train", utterances, ScenesConfig(**data["scenes"]), seed=0)
    pairs = [(wave, u.text.upper()) for wave, u in zip(synthesize_all(spoken, 16000), spoken)]
    half = len(pairs) // 2
    folder = write_librispeech(tmp / "LibriSpeech", {(1, 1): pairs[:half], (2, 1): pairs[half:]}, 16000)
    batch = data["batch_size"]  # several epochs: on the fly, each one encodes the audio again

    def make(shards: str | None) -> SpeechDataModule:
        return SpeechDataModule(codec_path=codec, num_codebooks=data["num_codebooks"],
                                librispeech=str(folder), num_val=8, bpe_vocab_size=data["bpe_vocab_size"],
                                batch_size=batch, shards=shards)

    return compare("speech_to_text (codec 4 x 50 Hz)", make, SpeechToTextModule,
                   model_args("speech_stt.yaml"), batch, tmp / "stt_shards", steps, warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per run")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--utterances", type=int, default=104, help="utterances in the LibriSpeech folder")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/shards.json"))
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="anytoken-bench-shards-") as tmp:
        rows = [text_to_image(Path(tmp), args.steps, args.warmup),
                speech_to_text(Path(tmp), args.steps, args.warmup, args.utterances)]
    load_after = os.getloadavg()
    print(f"{'task':<34} {'batch':>5} {'fly s/step':>10} {'shards s/step':>13} {'fly samp/s':>10} "
          f"{'shards samp/s':>13} {'speed-up':>8} {'tokenize s':>10}")
    for r in rows:
        print(f"{r['task']:<34} {r['batch_size']:>5} {r['on_the_fly_s_per_step']:>10.3f} "
              f"{r['shards_s_per_step']:>13.3f} {r['on_the_fly_samples_per_s']:>10.1f} "
              f"{r['shards_samples_per_s']:>13.1f} {r['speedup']:>7.2f}x {r['tokenize_s']:>10.1f}")
    print(f"load average (1/5/15 min) before {load_before}, after {load_after}; torch threads "
          f"{torch.get_num_threads()}; rerun on a quiet machine if the 1-min load is above 1.5")
    result = {"rows": rows, "load_before": load_before, "load_after": load_after,
              "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "args": vars(args)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
