"""Speech tasks (``anytoken.models.speech``): speech to text, scored by CER/WER, and text to speech, whose
generated speech is measured against the reference's duration and written as WAV files.

The codec is a frozen part of the model: when training starts ``TokenTaskModule.setup`` copies its
weights from the DataModule's codec (which made the training tokens), and checkpoints and releases carry
them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from anytoken.atomic import atomic_path
from anytoken.models import AnytokenModel
from anytoken.models.speech import Layout, codec_of
from anytoken.tasks.evaluation import Evaluation, register_evaluation
from anytoken.tasks.metrics.audio import error_rates
from anytoken.tasks.module import TokenTaskModule


class SpeechToTextModule(TokenTaskModule):
    """Transcribe speech: generate the text of an utterance's codec codes (``TranscribeFormat``).

    Args:
        audio_layout: ``"flatten"`` or ``"delay"`` (``anytoken.models.speech``).
        *args, **kwargs: those of ``TokenTaskModule``.
    """

    def __init__(self, *args: Any, audio_layout: Layout = "flatten", **kwargs: Any) -> None:
        formats = {"transcribe": {"kind": "transcribe", "audio_layout": audio_layout}}
        super().__init__(*args, formats=formats, **kwargs)


class TextToSpeechModule(TokenTaskModule):
    """Speak text: generate codec codes for a sentence and decode them to a wave (``SpeakFormat``).

    Args:
        audio_layout: ``"flatten"`` or ``"delay"`` (``anytoken.models.speech``).
        max_seconds: longest speech generated (level 0 is made to end there).
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
        super().on_validation_epoch_start()
        self._aim_speech()

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self._aim_speech()

    def _aim_speech(self) -> None:
        """How many texts the evaluation speaks and where it writes them (rank 0, under the log dir)."""
        evaluation = self.evaluations[self.task_name]
        evaluation.num_audio_samples = 0 if self.trainer.sanity_checking else self.num_audio_samples
        log_dir = self.trainer.log_dir if self.global_rank == 0 else None
        evaluation.wave_dir = None if log_dir is None else Path(log_dir) / "speech"
        evaluation.wave_tag = f"step{self.global_step:07d}"


@register_evaluation
class TranscribeEvaluation(Evaluation):
    """CER, WER and exact transcripts of greedy transcription against the reference texts."""

    kind = "transcribe"

    def step(self, model: AnytokenModel, batch: dict[str, Any]) -> list[dict[str, Any]]:
        texts = self.fmt.transcribe(model, batch["codes"])
        rows = zip(batch["ids"], texts, batch["texts"])
        return [{"id": i, "transcript": t, "reference": r} for i, t, r in rows]

    def report(self, outputs: list[dict[str, Any]]) -> dict[str, float]:
        return error_rates([o["transcript"] for o in outputs], [o["reference"] for o in outputs])

    def examples(self, outputs: list[dict[str, Any]]) -> list[str]:
        shown = outputs[: self.num_examples]
        return [f"  {o['transcript']!r:<60} reference: {o['reference']!r}" for o in shown]

    def predict(self, model: AnytokenModel, batch: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"id": o["id"], "transcript": o["transcript"]} for o in self.step(model, batch)]


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
            total = sum(o["samples"] for o in scored)
            metrics["level0_accuracy"] = sum(o["level0_accuracy"] * o["samples"] for o in scored) / total
        spoken = [o for o in outputs if "frames" in o]
        if spoken:
            reference = sum(o["reference_frames"] for o in spoken)
            metrics["duration_ratio"] = sum(o["frames"] for o in spoken) / reference
        return metrics

    def examples(self, outputs: list[dict[str, Any]]) -> list[str]:
        return [f"  {o['path']}  <- {o['text']!r}" for o in outputs if o.get("path")]

    def predict(self, model: AnytokenModel, batch: dict[str, Any]) -> list[dict[str, Any]]:
        codes = self.fmt.generate_codes(model, batch["texts"])
        return [{"id": i, "text": t, "codes": c} for i, t, c in zip(batch["ids"], batch["texts"], codes)]
