"""Speech tasks (``anytoken.models.speech``): speech to text, scored by CER/WER, and text to speech, whose
generated speech is measured against the reference's duration and written as WAV files. The codec is a
frozen part of the model, copied from the DataModule's when training starts (``TokenTaskModule.setup``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from anytoken.atomic import atomic_path
from anytoken.models import AnytokenModel
from anytoken.models.speech import Layout, codec_of
from anytoken.tasks.evaluation import Evaluation, gather, per_sample, register_evaluation
from anytoken.tasks.metrics.audio import error_rates
from anytoken.tasks.module import TokenTaskModule


class SpeechToTextModule(TokenTaskModule):
    """Transcribe speech: generate the text of an utterance's codec codes. Arguments: ``audio_layout``
    (``TranscribeFormat``'s), then ``TokenTaskModule``'s."""

    def __init__(self, *args: Any, audio_layout: Layout = "flatten", **kwargs: Any) -> None:
        formats = {"transcribe": {"kind": "transcribe", "audio_layout": audio_layout}}
        super().__init__(*args, formats=formats, **kwargs)


class TextToSpeechModule(TokenTaskModule):
    """Speak text: generate codec codes for a sentence and decode them to a wave (``SpeakFormat``).

    Args:
        audio_layout, max_seconds: ``SpeakFormat``'s.
        num_audio_samples: texts of each evaluation batch spoken, measured and written to
            ``LOG_DIR/speech/`` at each validation and test (not while sanity checking).
        *args, **kwargs: those of ``TokenTaskModule``.
    """

    def __init__(
        self,
        *args: Any,
        audio_layout: Layout = "flatten",
        max_seconds: float = 6.0,
        num_audio_samples: int = 4,
        **kwargs: Any,
    ) -> None:
        spec = {"kind": "speak", "audio_layout": audio_layout, "max_seconds": max_seconds}
        super().__init__(*args, formats={"speak": spec}, **kwargs)
        self.num_audio_samples = num_audio_samples

    def on_validation_epoch_start(self) -> None:
        """Aim the evaluation: how many texts it speaks and where it writes them (rank 0, the log dir)."""
        super().on_validation_epoch_start()
        evaluation = self.evaluations[self.task_name]
        evaluation.num_audio_samples = 0 if self.trainer.sanity_checking else self.num_audio_samples
        log_dir = self.trainer.log_dir if self.global_rank == 0 else None
        evaluation.wave_dir = None if log_dir is None else Path(log_dir) / "speech"
        evaluation.wave_tag = f"step{self.global_step:07d}"

    on_test_epoch_start = on_validation_epoch_start


@register_evaluation
class TranscribeEvaluation(Evaluation):
    """CER, WER and exact transcripts of greedy transcription against the reference texts."""

    kind = "transcribe"
    example = "  {transcript!r:<60} reference: {reference!r}"
    predict_keys = ("id", "transcript")

    def step(self, model: AnytokenModel, batch: dict[str, Any]) -> list[dict[str, Any]]:
        texts = self.fmt.transcribe(model, batch["codes"])
        return per_sample(id=batch["ids"], transcript=texts, reference=batch["texts"])

    def report(self, outputs: list[dict[str, Any]]) -> dict[str, float]:
        return error_rates(*gather(outputs, "transcript", "reference"))


@register_evaluation
class SpeakEvaluation(Evaluation):
    """The codebook heads' level-0 accuracy (layout ``"delay"``), and speech generated for the first
    ``num_audio_samples`` texts of each batch: its length over the reference's (``duration_ratio``), and,
    where the training task points ``wave_dir``, WAV files ``SPLIT_TAG_INDEX.wav`` (sample id
    ``SPLIT/INDEX``) listed after testing."""

    kind = "speak"
    num_audio_samples: int = 4
    wave_dir: Path | None = None
    wave_tag: str = ""

    @torch.no_grad()
    def step(self, model: AnytokenModel, batch: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self.fmt.audio_layout == "delay":
            accuracy = self.fmt.delay_loss(model, batch)[1]  # (K,)
            out.append({"level0_accuracy": float(accuracy[0]), "samples": len(batch["codes"])})
        texts = batch["texts"][: self.num_audio_samples]
        made = self.fmt.generate_codes(model, texts) if texts else []
        for sample_id, text, codes, reference in zip(batch["ids"], texts, made, batch["codes"]):
            out.append({"text": text, "frames": codes.shape[-1], "reference_frames": reference.shape[-1],
                        "path": self._write(model, str(sample_id), codes)})
        return out

    def _write(self, model: AnytokenModel, sample_id: str, codes: torch.Tensor) -> str | None:
        """``codes`` ``[K, T']`` decoded by the model's codec into ``wave_dir`` (None: nothing written)."""
        if self.wave_dir is None:
            return None
        split, _, index = sample_id.partition("/")
        path = self.wave_dir / f"{split}_{self.wave_tag}_{index}.wav"
        codec = codec_of(model)
        with atomic_path(path) as tmp:
            codec.write_media(codec.decode(codes.to(model.device)).cpu(), tmp)
        return str(path)

    def report(self, outputs: list[dict[str, Any]]) -> dict[str, float]:
        metrics = {}
        scored = [o for o in outputs if "level0_accuracy" in o]
        if scored:
            accuracy, samples = gather(scored, "level0_accuracy", "samples")
            metrics["level0_accuracy"] = sum(a * n for a, n in zip(accuracy, samples)) / sum(samples)
        spoken = [o for o in outputs if "frames" in o]
        if spoken:
            frames, reference = gather(spoken, "frames", "reference_frames")
            metrics["duration_ratio"] = sum(frames) / sum(reference)
        return metrics

    def examples(self, outputs: list[dict[str, Any]]) -> list[str]:
        return [f"  {o['path']}  <- {o['text']!r}" for o in outputs if o.get("path")]

    def predict(self, model: AnytokenModel, batch: dict[str, Any]) -> list[dict[str, Any]]:
        codes = self.fmt.generate_codes(model, batch["texts"])
        return per_sample(id=batch["ids"], text=batch["texts"], codes=codes)
