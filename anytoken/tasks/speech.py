"""Speech tasks on audio codec tokens: speech to text (``<transcribe>``) and text to speech (``<speak>``).

Sequences (``SpeechDataModule`` batches: ``texts``, ``text_ids``, ``codes`` ``[K, T']`` per utterance)::

    transcribe: <bos> <audio> [audio] </audio> <transcribe> <text> transcript </text>
    speak:      <bos> <speak> <text> words </text> <audio> [audio] </audio>

``[audio]`` follows ``audio_layout``:

- ``"flatten"``: ``K`` tokens per frame, level by level (codec local id ``k * C + c``); text to speech
  generates them under the codec's ``grammar()`` (whole frames, each level from its own sub-range).
- ``"delay"``: one position per frame whose input is the sum of its codes' embeddings
  (``heads.codebooks``); text to speech predicts the delay pattern with parallel ``CodebookHeads``
  (``T + K - 1`` positions instead of ``K * T``); speech to text reads the frames as they are.

The codec is a frozen part of the model (``TokenTaskModule.media_tokenizers``): when training starts its
weights are copied from the DataModule's codec (which made the training tokens), and checkpoints and
releases carry them, so a model decodes its own audio tokens anywhere.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_info

from anytoken.heads import DecodingConfig
from anytoken.heads.codebooks import (
    CodebookHeads,
    delay_pattern,
    delay_targets,
    frame_embeddings,
    generate_delayed,
)
from anytoken.tasks.audio_metrics import error_rates
from anytoken.tasks.module import TokenTaskModule
from anytoken.tokenizers.audio_codec import AudioCodecTokenizer
from anytoken.tokenizers.sequence import Embeds, Segment, SequenceBatch, Special, Tokens

Layout = Literal["flatten", "delay"]


class SpeechModule(TokenTaskModule):
    """What both speech tasks share: the frozen codec, the audio layout and frame embeddings.

    Args:
        audio_layout: ``"flatten"`` or ``"delay"`` (see the module docstring).
        num_examples: outputs printed after testing.
        *args, **kwargs: those of ``TokenTaskModule``.
    """

    task_tag: str = ""

    def __init__(
        self, *args: Any, audio_layout: Layout = "flatten", num_examples: int = 8, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        codec = self.tokenizers.get("audio")
        if not isinstance(codec, AudioCodecTokenizer):
            raise ValueError(
                f"{type(self).__name__} needs an audio_codec tokenizer for modality 'audio', got "
                f"{type(codec).__name__}"
            )
        if self.task_tag not in self.space.tasks:
            raise ValueError(f"the TokenSpace has no <{self.task_tag}> tag (tasks: {list(self.space.tasks)})")
        if audio_layout not in ("flatten", "delay"):
            raise ValueError(f"audio_layout must be 'flatten' or 'delay', got {audio_layout!r}")
        self.audio_layout, self.num_examples = audio_layout, num_examples
        self._outputs: dict[str, list[tuple[str, str, str]]] = {}

    @property
    def codec(self) -> AudioCodecTokenizer:
        """The frozen codec (``TokenTaskModule.media_tokenizers["audio"]``: saved with the model)."""
        return self.media_tokenizers["audio"]

    def setup(self, stage: str) -> None:
        """Take the trained codec weights from the DataModule (its codec made the training tokens)."""
        codec = getattr(self.datamodule, "codec", None)
        if isinstance(codec, AudioCodecTokenizer) and codec.config() != self.codec.config():
            raise ValueError("the DataModule's codec differs from the model's (config mismatch)")
        super().setup(stage)

    def num_samples(self, batch: dict[str, Any]) -> int:
        return len(batch["text_ids"])

    # --- audio in the stream -------------------------------------------------------------------------
    def audio_segment(
        self, codes: torch.Tensor, source: int, *, target: bool = False, prefix: bool = False
    ) -> Segment:
        """Codes ``[K, T']`` of batch item ``source`` as a segment of the configured layout."""
        if self.audio_layout == "flatten":
            return Tokens("audio", self.codec.codes_to_ids(codes), target=target, prefix=prefix)
        length = codes.shape[-1] + (codes.shape[0] - 1 if target else 0)  # delayed when predicted
        return Embeds("audio", length, source, prefix=prefix)

    def frame_grids(self, batch: dict[str, Any]) -> list[torch.Tensor]:
        """Per batch item, the ``[L, K]`` codes of its audio positions (layout ``"delay"``)."""
        return [codes.t() for codes in batch["codes"]]

    def embed(self, seq: SequenceBatch, media: dict[str, Any]) -> torch.Tensor:
        """Token embeddings ``[B, T, d]``; audio placeholders get the sum of their frame's code embeddings."""
        x = self.backbone.embed_ids(self.dropped_inputs(seq))  # (B, T, d)
        if seq.embed_sources.numel():
            grids = self.frame_grids(media)
            grid = torch.cat([grids[s] for s in seq.embed_sources.tolist()]).to(x.device)  # (N, K)
            frames = frame_embeddings(
                self.backbone.embed_ids, grid, self.space.range("audio").start, self.codec.cardinality
            )  # (N, d)
            x = x.masked_scatter(seq.embed_mask[..., None], frames.to(x.dtype))
        return x

    # --- evaluation ----------------------------------------------------------------------------------
    def _split(self, stage: str, dataloader_idx: int) -> str:
        if stage != "test":
            return stage
        names = getattr(self.datamodule, "test_names", None)
        return names[dataloader_idx] if names and dataloader_idx < len(names) else f"test{dataloader_idx}"

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.evaluate(batch, batch_idx, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self.evaluate(batch, batch_idx, self._split("test", dataloader_idx))

    def evaluate(self, batch: dict[str, Any], batch_idx: int, split: str) -> None:
        raise NotImplementedError

    def on_validation_epoch_start(self) -> None:
        self._outputs = {}

    def on_test_epoch_start(self) -> None:
        self._outputs = {}


class SpeechToTextModule(SpeechModule):
    """Transcribe speech: generate the text of an utterance's codec tokens. Reports CER/WER per split."""

    task_tag = "transcribe"

    def samples(self, batch: dict[str, Any], targets: bool) -> list[list[Segment]]:
        out = []
        for i, codes in enumerate(batch["codes"]):
            prompt = [Special("<bos>"), self.audio_segment(codes, i, prefix=True), Special("<transcribe>")]
            text = (
                Tokens("text", batch["text_ids"][i], target=True)
                if targets
                else Tokens("text", torch.empty(0, dtype=torch.long), close=False)
            )
            out.append(prompt + [text])
        return out

    def num_samples(self, batch: dict[str, Any]) -> int:
        return len(batch["codes"])

    @torch.no_grad()
    def transcribe(self, codes: list[torch.Tensor], decoding: DecodingConfig | None = None) -> list[str]:
        """Transcripts of utterances given as codec codes ``[K, T']`` each."""
        ids = self.generate_segment({"codes": codes}, "text", decoding)
        return [self.tokenizers["text"].decode(i) for i in ids]

    @torch.no_grad()
    def transcribe_waves(self, waves: list[torch.Tensor], sample_rate: int | None = None) -> list[str]:
        """Transcripts of waves ``[C, T]`` (at ``sample_rate``, default the codec's)."""
        return self.transcribe([self.codec.encode(w, sample_rate)[0] for w in waves])

    def evaluate(self, batch: dict[str, Any], batch_idx: int, split: str) -> None:
        n = len(batch["codes"])
        self.log(f"{split}/loss", self.loss(batch), batch_size=n, add_dataloader_idx=False, sync_dist=True)
        rows = zip(batch["ids"], self.transcribe(batch["codes"]), batch["texts"])
        self._outputs.setdefault(split, []).extend(rows)

    def _report(self) -> None:
        for split, rows in self._outputs.items():
            scores = error_rates([p for _, p, _ in rows], [r for _, _, r in rows])
            for name, value in scores.items():
                self.log(f"{split}/{name}", value, add_dataloader_idx=False, rank_zero_only=True)

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self._report()

    def on_test_epoch_end(self) -> None:
        lines = ["", "Transcripts beside their references:"]
        for split, rows in self._outputs.items():
            lines.append(f"[{split}]")
            lines += [f"  {pred!r:<60} reference: {ref!r}" for _, pred, ref in rows[: self.num_examples]]
        rank_zero_info("\n".join(lines))
        self._report()

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, str]]:
        return [{"id": i, "transcript": t} for i, t in zip(batch["ids"], self.transcribe(batch["codes"]))]


class TextToSpeechModule(SpeechModule):
    """Speak text: generate codec tokens for a sentence and decode them to a wave.

    Args:
        max_seconds: longest speech generated (level 0 is made to end there).
        num_audio_samples: waves written to ``LOG_DIR/speech/`` at each validation and test.
        *args, **kwargs: those of ``SpeechModule``.
    """

    task_tag = "speak"

    def __init__(
        self, *args: Any, max_seconds: float = 6.0, num_audio_samples: int = 4, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.max_frames = max(1, int(max_seconds * self.codec.frame_rate))
        self.num_audio_samples = num_audio_samples
        if self.audio_layout == "delay":
            self.codebook_heads = CodebookHeads(
                self.backbone.config.d_model, self.codec.num_codebooks, self.codec.cardinality
            )

    def samples(self, batch: dict[str, Any], targets: bool) -> list[list[Segment]]:
        out = []
        for i, text_ids in enumerate(batch["text_ids"]):
            prompt = [Special("<bos>"), Special("<speak>"), Tokens("text", text_ids, prefix=True)]
            audio = (
                self.audio_segment(batch["codes"][i], i, target=True)
                if targets
                else Tokens("audio", torch.empty(0, dtype=torch.long), close=False)
            )
            out.append(prompt + [audio])
        return out

    def frame_grids(self, batch: dict[str, Any]) -> list[torch.Tensor]:
        return [delay_pattern(codes).t() for codes in batch["codes"]]  # (T' + K - 1, K) each

    def loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """Flatten: the LM loss. Delay: the codebook heads' loss at ``<audio>`` and every frame position."""
        if self.audio_layout == "flatten":
            return super().loss(batch)
        return self._delay_loss(batch)[0]

    def _delay_loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        seq = self.sequences(batch)
        hidden = self.hidden_states(seq, batch)  # (B, T, d)
        predicting = seq.embed_mask | (seq.input_ids == self.space.begin("audio"))  # <audio>, P_0 .. P_{L-1}
        targets = torch.cat([delay_targets(c, self.codec.cardinality) for c in batch["codes"]]).to(
            hidden.device
        )
        return self.codebook_heads.loss(hidden[predicting], targets)

    @torch.no_grad()
    def generate_codes(self, texts: list[str], decoding: DecodingConfig | None = None) -> list[torch.Tensor]:
        """Codec codes ``[K, T_i]`` spoken for each text."""
        batch = {"text_ids": self.tokenizers["text"].encode_batch(texts)}
        decoding = decoding or self.decoding
        if self.audio_layout == "flatten":
            K = self.codec.num_codebooks
            ids = self.generate_segment(
                batch, "audio", replace(decoding, max_new_tokens=self.max_frames * K + 1)
            )
            return [self.codec.ids_to_codes(i[: len(i) // K * K]) for i in ids]
        seq = self.sequences(batch, targets=False, padding_side="left")
        offset, C = self.space.range("audio").start, self.codec.cardinality
        return generate_delayed(
            self.backbone,
            self.codebook_heads,
            self.embed(seq, batch),
            seq.sample_ids > 0,
            lambda grid: frame_embeddings(self.backbone.embed_ids, grid, offset, C),
            self.max_frames,
            decoding,
        )

    @torch.no_grad()
    def speak(self, texts: list[str], decoding: DecodingConfig | None = None) -> list[torch.Tensor]:
        """Waves ``[C, T_i]`` at the codec's sample rate, one per text."""
        return [self.codec.decode(c.to(self.device))[0].cpu() for c in self.generate_codes(texts, decoding)]

    def evaluate(self, batch: dict[str, Any], batch_idx: int, split: str) -> None:
        n = len(batch["codes"])
        if self.audio_layout == "delay":
            loss, accuracy = self._delay_loss(batch)
            self.log(
                f"{split}/level0_accuracy",
                accuracy[0],
                batch_size=n,
                add_dataloader_idx=False,
                sync_dist=True,
            )
        else:
            loss = self.loss(batch)
        self.log(f"{split}/loss", loss, batch_size=n, add_dataloader_idx=False, sync_dist=True)
        if batch_idx == 0 and self.num_audio_samples > 0 and not self.trainer.sanity_checking:
            k = min(self.num_audio_samples, n)
            codes = self.generate_codes(batch["texts"][:k])
            ratio = sum(c.shape[-1] for c in codes) / sum(c.shape[-1] for c in batch["codes"][:k])
            self.log(
                f"{split}/duration_ratio", ratio, batch_size=k, add_dataloader_idx=False, rank_zero_only=True
            )
            self._write_waves(split, batch["texts"][:k], codes)

    def _write_waves(self, split: str, texts: list[str], codes: list[torch.Tensor]) -> None:
        """Generated speech to ``LOG_DIR/speech/SPLIT_stepN_i.wav`` (its text in the log)."""
        from anytoken.atomic import atomic_path

        if self.trainer.log_dir is None or self.global_rank != 0:
            return
        for i, (text, c) in enumerate(zip(texts, codes)):
            path = Path(self.trainer.log_dir) / "speech" / f"{split}_step{self.global_step:07d}_{i}.wav"
            with atomic_path(path) as tmp:
                self.codec.write_media(self.codec.decode(c.to(self.device)).cpu(), tmp)
            self._outputs.setdefault(split, []).append((str(path), text, f"{c.shape[-1]} frames"))

    def on_test_epoch_end(self) -> None:
        lines = ["", "Generated speech:"]
        lines += [
            f"  [{split}] {path}  <- {text!r}"
            for split, rows in self._outputs.items()
            for path, text, _ in rows
        ]
        rank_zero_info("\n".join(lines))

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        return [
            {"id": i, "text": t, "codes": c}
            for i, t, c in zip(batch["ids"], batch["texts"], self.generate_codes(batch["texts"]))
        ]
