"""Visual question answering: ``<bos> <image> [features] </image> <vqa> <text> question </text>``, then
``<text> answer </text>`` from the LM head, or (classification head) the sequence pooled into one of
``model.vocab["answers"]``, trained on the VQA soft scores ``min(#humans / 3, 1)``.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Any, Literal

import torch
import torch.nn.functional as F

from anytoken.heads import ClassifyHead, DecodingConfig
from anytoken.heads.classify import Pooling
from anytoken.models.formats import AnytokenModel, TaskFormat, check_choice, register_format
from anytoken.tokenizers.audio_codes import AudioCodes
from anytoken.tokenizers.sequence import (
    Embeds,
    Segment,
    SequenceBatch,
    Special,
    Tokens,
    build_attention_mask,
    build_sequences,
)
from anytoken.tokenizers.space import TokenSpace


@register_format
class VQAFormat(TaskFormat):
    """Answer questions about images from their encoder features.

    Batches (``VQADataModule``): ``images`` ``[N, 3, H, W]`` in ``[0, 1]``, ``image_index`` ``[Q]`` (each
    question's image), ``question_tokens`` (1-D local text ids) or, spoken, ``question_codes`` (``[K, T']``
    each) and, for training, ``answer_tokens``, ``answer_scores`` ``[Q, K]`` (soft targets of the K answer
    classes) and optionally ``caption_tokens`` (one per image).

    Args:
        head: ``"generate"`` (answer text from the LM head) or ``"classify"`` (one of ``vocab["answers"]``).
        pooling: how the classification head pools the sequence: ``"last"`` token or ``"mean"``.
        layout: ``"image_first"`` (an image's questions share its prompt in one training row) or
            ``"question_first"`` (``<bos> <vqa> question image``: the image tokens see the question, so each
            image cell can check itself against it, at about twice the tokens per question in training).
        question_modality: ``"text"`` (``question_tokens``) or ``"audio"`` (spoken: ``question_codes``).
        caption_weight: weight of an auxiliary captioning loss on batches with ``caption_tokens``: dense
            image-dependent supervision that trains the image pathway much faster than answers alone.
    """

    kind = "vqa"
    tags = ("vqa",)
    needs_image_encoder = True
    samples_key = "image_index"

    def __init__(
        self,
        head: Literal["generate", "classify"] = "generate",
        pooling: Pooling = "last",
        layout: Literal["image_first", "question_first"] = "image_first",
        question_modality: Literal["text", "audio"] = "text",
        caption_weight: float = 0.0,
    ) -> None:
        super().__init__()
        check_choice("head", head, ("generate", "classify"))
        check_choice("layout", layout, ("image_first", "question_first"))
        check_choice("question_modality", question_modality, ("text", "audio"))
        if caption_weight < 0:
            raise ValueError(f"caption_weight must be >= 0, got {caption_weight}")
        if layout == "question_first" and caption_weight > 0:
            raise ValueError("caption_weight needs layout='image_first' (captions share the image prompt)")
        self.head, self.pooling, self.layout = head, pooling, layout
        self.question_modality, self.caption_weight = question_modality, caption_weight
        self.classifier: ClassifyHead | None = None

    def bind(self, model: AnytokenModel) -> None:
        super().bind(model)
        if self.caption_weight > 0 and "caption" not in model.space.tasks:
            raise ValueError(f"caption_weight > 0 needs a <caption> tag in the TokenSpace (tasks: "
                             f"{list(model.space.tasks)})")
        speech = isinstance(model.tokenizers.get("audio"), AudioCodes)
        if self.question_modality == "audio" and not speech:
            raise ValueError("question_modality='audio' needs an audio codec tokenizer in vocab "
                             "(SpokenVQADataModule gives one)")
        if self.head == "classify":
            answers = model.vocab.get("answers") or []
            if len(answers) < 2:
                raise ValueError("head='classify' needs vocab['answers'] with at least 2 answers")
            self.classifier = ClassifyHead(model.backbone.config.d_model, len(answers), self.pooling)

    def question(self, model: AnytokenModel, batch: dict[str, Any], index: int) -> Tokens:
        """Question ``index`` of ``batch``: its text ids, or (spoken) its codec codes as audio ids, heard
        whole (a bidirectional prefix, as speech to text hears an utterance)."""
        if self.question_modality == "text":
            return Tokens("text", batch["question_tokens"][index])
        ids = model.tokenizers["audio"].codes_to_ids(batch["question_codes"][index])
        return Tokens("audio", ids, prefix=True)

    def samples(self, model: AnytokenModel, batch: dict[str, Any], targets: bool) -> list[list[Segment]]:
        prompts = []
        for i in range(len(batch["image_index"])):
            source = int(batch["image_index"][i])
            if self.layout == "question_first":
                image = Embeds("image", model.image_tokens, source)
                prompts.append([Special("<bos>"), Special("<vqa>"), self.question(model, batch, i), image])
            else:
                prompts.append(model.image_prompt(source, "vqa") + [self.question(model, batch, i)])
        if self.head == "classify":
            return prompts
        return self.with_targets(prompts, "text", batch["answer_tokens"] if targets else None)

    def shared_prefix(self, model: AnytokenModel, batch: dict[str,
                      Any]) -> tuple[SequenceBatch, torch.Tensor, torch.Tensor]:
        """One row per image: its prompt ``<bos> <image>..</image>`` once, then (with ``caption_weight``) a
        ``<caption> caption`` block, then a ``<vqa> question [answer]`` block per question, under a mask
        that lets each block see only the prompt and itself. Each block gets exactly the context and RoPE
        positions of its own sample, so the loss is the same, in about half the tokens.

        Returns:
            The rows, their positions ``[N, T]`` and the attention mask ``[N, 1, T, T]``.
        """
        rows: list[list[Segment]] = [model.image_prompt(n, "vqa")[:-1] for n in range(len(batch["images"]))]
        if self._captions(batch):
            for row, caption in zip(rows, batch["caption_tokens"]):
                row += [Special("<caption>"), Tokens("text", caption, target=True)]
        for i in range(len(batch["image_index"])):
            block: list[Segment] = [Special("<vqa>"), self.question(model, batch, i)]
            if self.head == "generate":
                block.append(Tokens("text", batch["answer_tokens"][i], target=True))
            rows[int(batch["image_index"][i])] += block
        # a row may outgrow one sample's context: each of its blocks keeps the positions of its own sample
        seq = build_sequences(rows, model.space, max_length=sys.maxsize, mask=model.mask,
                              loss_weights=model.loss_weights).to(model.device)
        idx = torch.arange(seq.input_ids.shape[1], device=model.device).expand_as(seq.input_ids)  # (N, T)
        starts = _tag(model.space, seq, "vqa") | _tag(model.space, seq, "caption")  # (N, T): block starts
        block_of = starts.long().cumsum(1)  # (N, T): 0 on the shared prompt, j on block j
        block_start = torch.where(starts, idx, 0).cummax(1).values  # (N, T)
        prompt_len = starts.long().argmax(1, keepdim=True)  # (N, 1)
        positions = torch.where(block_of > 0, prompt_len + idx - block_start, idx)  # (N, T)
        positions = positions.masked_fill(seq.sample_ids == 0, 0)  # padding, as build_sequences has it
        visible = (block_of[:, None, :] == 0) | (block_of[:, None, :] == block_of[:, :, None])  # (N, T, T)
        mask = build_attention_mask(seq.sample_ids, seq.prefix_blocks) & visible[:, None]  # (N, 1, T, T)
        return seq, positions, mask

    def _captions(self, batch: dict[str, Any]) -> bool:
        return self.caption_weight > 0 and "caption_tokens" in batch

    def loss(self, model: AnytokenModel, batch: dict[str, Any]) -> torch.Tensor:
        """The answer loss (LM loss on the answer tokens, or soft-target cross-entropy over the answer
        classes) plus ``caption_weight`` times the captioning loss when the batch has captions."""
        scores = batch.get("answer_scores")
        if self.layout == "question_first" or (self.head == "classify" and self.pooling == "mean"):
            # nothing to share (mean pooling pools the prompt too): one row per question
            if self.head == "generate":
                return super().loss(model, batch)
            return _soft_cross_entropy(self.class_logits(model, batch), scores.to(model.device))
        seq, positions, mask = self.shared_prefix(model, batch)
        hidden = model.hidden_states(seq, self.embed(model, seq, batch), positions=positions, attn_mask=mask)
        questions = _tag(model.space, seq, "vqa").long().cumsum(1) > 0  # (N, T): inside question blocks
        if self.head == "generate":
            loss = model.lm_loss(replace(seq, loss_weights=seq.loss_weights * questions), hidden)
        else:
            ends = _block_ends(_tag(model.space, seq, "vqa"), seq.sample_ids > 0)  # (N, T)
            logits = self.classifier(hidden[ends][:, None]).float()  # (Q, K), questions in row order
            order = torch.sort(torch.as_tensor(batch["image_index"]), stable=True).indices  # rows: by image
            loss = _soft_cross_entropy(logits, scores.to(model.device)[order])
        if self._captions(batch):
            caption = model.lm_loss(replace(seq, loss_weights=seq.loss_weights * ~questions), hidden)
            loss = loss + self.caption_weight * caption
        return loss

    def class_logits(self, model: AnytokenModel, batch: dict[str, Any]) -> torch.Tensor:
        """``[Q, K]`` answer-class logits for the batch's questions, one row each (classification head)."""
        seq = self.rows(model, batch)  # right-padded as in training (classification rows have no targets)
        hidden = model.hidden_states(seq, self.embed(model, seq, batch))  # (Q, T, d)
        return self.classifier(hidden, seq.sample_ids > 0).float()  # (Q, K)

    @torch.no_grad()
    def answer(self, model: AnytokenModel, batch: dict[str, Any],
               decoding: DecodingConfig | None = None) -> list[str]:
        """One answer per question of ``batch`` (needs ``images``, ``image_index`` and ``question_tokens``,
        or ``question_codes`` for spoken questions)."""
        if self.head == "classify":
            answers = model.vocab["answers"]
            return [answers[k] for k in self.class_logits(model, batch).argmax(-1).tolist()]
        ids = model.generate(self, batch, "text", decoding)
        return [model.tokenizers["text"].decode(i).strip() for i in ids]

    @torch.no_grad()
    def ask(self, model: AnytokenModel, images: torch.Tensor, questions: list[str] | list[torch.Tensor],
            image_index: list[int] | None = None, decoding: DecodingConfig | None = None,
            sample_rate: int | None = None) -> list[str]:
        """Answers to ``questions`` about ``images`` ``[N, 3, H, W]`` in ``[0, 1]``.

        Args:
            questions: non-empty strings, or for a spoken-question model (``question_modality="audio"``)
                waves ``[C, T]`` at ``sample_rate`` (default the codec's).
            image_index: the image each question is about; default question ``i`` -> image ``i``.
            decoding: generation settings (generative head only).
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [N, 3, H, W], got shape {tuple(images.shape)}")
        index = list(range(len(questions))) if image_index is None else list(image_index)
        if len(index) != len(questions) or any(not 0 <= i < len(images) for i in index):
            raise ValueError(f"image_index must give each of the {len(questions)} questions an image in "
                             f"[0, {len(images)}), got {index}")
        batch = {"images": images.to(model.device), "image_index": torch.tensor(index, dtype=torch.long)}
        if self.question_modality == "audio":
            if not questions or any(not isinstance(w, torch.Tensor) or w.dim() != 2 for w in questions):
                raise ValueError("this model answers spoken questions: give at least one wave [C, T] each")
            codec = model.media_tokenizers["audio"]
            batch["question_codes"] = [codec.encode(w.to(model.device), sample_rate)[0] for w in questions]
        else:
            if not questions or any(not isinstance(q, str) or not q.strip() for q in questions):
                raise ValueError("ask needs at least one question, each a non-empty string")
            batch["question_tokens"] = model.tokenizers["text"].encode_batch([q.strip() for q in questions])
        return self.answer(model, batch, decoding)


def _tag(space: TokenSpace, seq: SequenceBatch, task: str) -> torch.Tensor:
    """Bool ``[N, T]``: where ``seq`` holds the ``<task>`` tag (all False when the space lacks it)."""
    if task not in space.tasks:
        return torch.zeros_like(seq.input_ids, dtype=torch.bool)
    return seq.input_ids == space.task(task)


def _block_ends(starts: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Bool ``[N, T]``: the last valid position of each question block (a block ends where the next
    starts, or at the row's last valid position)."""
    next_starts, next_valid = F.pad(starts[:, 1:], (0, 1)), F.pad(valid[:, 1:], (0, 1))
    in_block = starts.long().cumsum(1) > 0
    return in_block & valid & (next_starts | ~next_valid)


def _soft_cross_entropy(logits: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``logits`` ``[Q, K]`` against the VQA soft scores ``[Q, K]`` normalised per question;
    questions none of whose human answers is a class are left out."""
    total = scores.sum(-1, keepdim=True)  # (Q, 1)
    per_question = -(scores / total.clamp(min=1e-8) * F.log_softmax(logits, dim=-1)).sum(-1)  # (Q,)
    return per_question.sum() / (total.squeeze(-1) > 0).sum().clamp(min=1)
