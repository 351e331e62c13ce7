"""Speech on audio codec tokens: speech to text (``<transcribe>``) and text to speech (``<speak>``).
Batches (``SpeechDataModule``): ``text_ids`` (1-D local text ids each) and ``codes`` (``[K, T']`` each).

    transcribe: <bos> <audio> [audio] </audio> <transcribe> <text> transcript </text>
    speak:      <bos> <speak> <text> words </text> <audio> [audio] </audio>

``[audio]`` follows ``audio_layout``: ``"flatten"``, ``K`` tokens per frame, level by level (local id
``k * C + c``); or ``"delay"``, one position per frame (the sum of its codes' embeddings), predicted in the
delay pattern by parallel ``CodebookHeads`` (``T + K - 1`` positions instead of ``K * T``).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

import torch

from anytoken.heads import DecodingConfig
from anytoken.heads.codebooks import (
    CodebookHeads,
    delay_pattern,
    delay_targets,
    frame_embeddings,
    generate_delayed,
)
from anytoken.models.formats import AnytokenModel, TaskFormat, check_choice, open_segment, register_format
from anytoken.tokenizers.audio_codes import AudioCodes
from anytoken.tokenizers.sequence import Embeds, Segment, SequenceBatch, Special, Tokens

Layout = Literal["flatten", "delay"]


def codec_of(model: AnytokenModel) -> AudioCodes:
    """The model's frozen audio codec (anytoken's, or an adapted EnCodec, DAC or Mimi)."""
    return model.media_tokenizers["audio"]


class AudioFormat(TaskFormat):
    """What both speech formats share: the audio layout (``"flatten"`` or ``"delay"``, see the module
    docstring) and the embeddings of audio frames."""

    tokenizer_types = {"audio": AudioCodes}
    samples_key = "codes"

    def __init__(self, audio_layout: Layout = "flatten") -> None:
        super().__init__()
        check_choice("audio_layout", audio_layout, ("flatten", "delay"))
        self.audio_layout = audio_layout

    def audio_segment(self, model: AnytokenModel, codes: torch.Tensor, source: int, *, target: bool = False,
                      prefix: bool = False) -> Segment:
        """Codes ``[K, T']`` of batch item ``source`` as a segment of the configured layout."""
        if self.audio_layout == "flatten":
            return Tokens("audio", codec_of(model).codes_to_ids(codes), target=target, prefix=prefix)
        length = codes.shape[-1] + (codes.shape[0] - 1 if target else 0)  # delayed when predicted
        return Embeds("audio", length, source, prefix=prefix)

    def frame_grids(self, batch: dict[str, Any]) -> list[torch.Tensor]:
        """Per batch item, the ``[L, K]`` codes of its audio positions (layout ``"delay"``)."""
        return [codes.t() for codes in batch["codes"]]

    def frames(self, model: AnytokenModel, grid: torch.Tensor) -> torch.Tensor:
        """Input embeddings ``[..., d]`` of audio positions holding the codes ``grid`` ``[..., K]``."""
        start = model.space.range("audio").start
        return frame_embeddings(model.backbone.embed_ids, grid, start, codec_of(model).cardinality)

    def embed(self, model: AnytokenModel, seq: SequenceBatch, batch: dict[str, Any]) -> torch.Tensor:
        """Token embeddings ``[B, T, d]``; audio placeholders get the sum of their frame's code embeddings."""
        x = model.backbone.embed_ids(model.dropped_inputs(seq))  # (B, T, d)
        if seq.embed_sources.numel():
            grids = self.frame_grids(batch)
            grid = torch.cat([grids[s] for s in seq.embed_sources.tolist()]).to(x.device)  # (N, K)
            x = x.masked_scatter(seq.embed_mask[..., None], self.frames(model, grid).to(x.dtype))
        return x


@register_format
class TranscribeFormat(AudioFormat):
    """Speech to text: the transcript of an utterance's codec codes."""

    kind = "transcribe"
    tags = ("transcribe",)

    def samples(self, model: AnytokenModel, batch: dict[str, Any], targets: bool) -> list[list[Segment]]:
        prompts = [[Special("<bos>"), self.audio_segment(model, c, i, prefix=True), Special("<transcribe>")]
                   for i, c in enumerate(batch["codes"])]
        return self.with_targets(prompts, "text", batch["text_ids"] if targets else None)

    @torch.no_grad()
    def transcribe(self, model: AnytokenModel, codes: list[torch.Tensor],
                   decoding: DecodingConfig | None = None) -> list[str]:
        """Transcripts of utterances given as codec codes ``[K, T']`` each."""
        ids = model.generate(self, {"codes": codes}, "text", decoding)
        return [model.tokenizers["text"].decode(i) for i in ids]

    @torch.no_grad()
    def transcribe_waves(self, model: AnytokenModel, waves: list[torch.Tensor],
                         sample_rate: int | None = None) -> list[str]:
        """Transcripts of waves ``[C, T]`` (at ``sample_rate``, default the codec's)."""
        return self.transcribe(model, [codec_of(model).encode(w, sample_rate)[0] for w in waves])


@register_format
class SpeakFormat(AudioFormat):
    """Text to speech: codec codes for a text, decoded to a wave by the model's codec.

    Args:
        audio_layout: ``"flatten"`` (the LM head) or ``"delay"`` (parallel ``CodebookHeads`` of this format).
        max_seconds: longest speech generated (level 0 is made to end there).
    """

    kind = "speak"
    tags = ("speak",)

    def __init__(self, audio_layout: Layout = "flatten", max_seconds: float = 6.0) -> None:
        super().__init__(audio_layout)
        self.max_seconds = max_seconds
        self.max_frames = 1
        self.codebook_heads: CodebookHeads | None = None

    def bind(self, model: AnytokenModel) -> None:
        super().bind(model)
        codec = codec_of(model)
        self.max_frames = max(1, int(self.max_seconds * codec.frame_rate))
        if self.audio_layout == "delay":
            d_model = model.backbone.config.d_model
            self.codebook_heads = CodebookHeads(d_model, codec.num_codebooks, codec.cardinality)

    def samples(self, model: AnytokenModel, batch: dict[str, Any], targets: bool) -> list[list[Segment]]:
        out = []
        for i, text_ids in enumerate(batch["text_ids"]):
            prompt = [Special("<bos>"), Special("<speak>"), Tokens("text", text_ids, prefix=True)]
            if targets:
                out.append(prompt + [self.audio_segment(model, batch["codes"][i], i, target=True)])
            else:
                out.append(prompt + [open_segment("audio")])
        return out

    def frame_grids(self, batch: dict[str, Any]) -> list[torch.Tensor]:
        return [delay_pattern(codes).t() for codes in batch["codes"]]  # (T' + K - 1, K) each

    def loss(self, model: AnytokenModel, batch: dict[str, Any]) -> torch.Tensor:
        """Flatten: the LM loss. Delay: the codebook heads' loss at ``<audio>`` and every frame position."""
        if self.audio_layout == "flatten":
            return super().loss(model, batch)
        return self.delay_loss(model, batch)[0]

    def delay_loss(self, model: AnytokenModel, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """The codebook heads' cross-entropy and their accuracy per level ``[K]`` (layout ``"delay"``)."""
        seq = self.rows(model, batch)
        hidden = model.hidden_states(seq, self.embed(model, seq, batch))  # (B, T, d)
        predicting = seq.embed_mask | (seq.input_ids == model.space.begin("audio"))  # <audio>, P_0 .. P_{L-1}
        C = codec_of(model).cardinality
        targets = torch.cat([delay_targets(c, C) for c in batch["codes"]]).to(hidden.device)  # (N, K)
        return self.codebook_heads.loss(hidden[predicting], targets)

    @torch.no_grad()
    def generate_codes(self, model: AnytokenModel, texts: list[str],
                       decoding: DecodingConfig | None = None) -> list[torch.Tensor]:
        """Codec codes ``[K, T_i]`` spoken for each text."""
        batch = {"text_ids": model.tokenizers["text"].encode_batch(texts)}
        if self.audio_layout == "flatten":
            codec = codec_of(model)
            K = codec.num_codebooks
            ids = model.generate(self, batch, "audio", self.budget(model, decoding, self.max_frames * K))
            return [codec.ids_to_codes(i[: len(i) // K * K]) for i in ids]
        seq = self.rows(model, batch, targets=False)
        return generate_delayed(model.backbone, self.codebook_heads, self.embed(model, seq, batch),
                                seq.sample_ids > 0, partial(self.frames, model), self.max_frames,
                                decoding or self.decoding_of(model))

    @torch.no_grad()
    def speak(self, model: AnytokenModel, texts: list[str],
              decoding: DecodingConfig | None = None) -> list[torch.Tensor]:
        """Waves ``[C, T_i]`` at the codec's sample rate, one per text."""
        codec, codes = codec_of(model), self.generate_codes(model, texts, decoding)
        return [codec.decode(c.to(model.device))[0].cpu() for c in codes]
