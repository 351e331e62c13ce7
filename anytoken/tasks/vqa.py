"""Visual question answering: ``<bos> <image> [features] </image> <vqa> <text> question </text>``, then

- the generative head: ``<text> answer </text>`` decoded by the LM head under the text grammar, or
- the classification head: the sequence pooled (last token or mean) into one of the most frequent
  training answers, trained on the VQA soft scores ``min(#humans / 3, 1)``.

Accuracy is the official VQA one (``anytoken.tasks.metrics.vqa_scores``), overall and per question type.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info

from anytoken.heads import ClassifyHead, DecodingConfig
from anytoken.heads.classify import Pooling
from anytoken.tasks.metrics import vqa_scores
from anytoken.tasks.module import TokenTaskModule
from anytoken.tokenizers.audio_codec import AudioCodecTokenizer
from anytoken.tokenizers.sequence import (
    Embeds,
    Segment,
    SequenceBatch,
    Special,
    Tokens,
    build_attention_mask,
    build_sequences,
)

EVAL_SPLITS = ("test", "heldout")  # names of the test dataloaders, in order


class VQAModule(TokenTaskModule):
    """Answer questions about images from their encoder features.

    Batches come from ``VQADataModule``: ``images`` ``[N, 3, H, W]`` in ``[0, 1]``, ``image_index``
    ``[Q]`` (the image of each question), ``question_tokens``/``answer_tokens`` (lists of 1-D local text
    ids), ``answer_scores`` ``[Q, K]`` (soft targets of the K answer classes), ``answers`` (the human
    answers), ``question_types``, ``questions`` and ``image_ids``.

    Args:
        head: ``"generate"`` (answer text from the LM head) or ``"classify"`` (one of ``vocab["answers"]``).
        pooling: how the classification head pools the sequence: ``"last"`` token or ``"mean"``.
        layout: ``"image_first"`` (``<bos> image <vqa> question``: an image's questions share its prompt in
            one training row) or ``"question_first"`` (``<bos> <vqa> question image``: the image tokens see
            the question, so each image cell can check itself against it, at about twice the tokens
            per question in training).
        question_modality: ``"text"`` (``question_tokens``) or ``"audio"``: spoken questions, the codec codes
            ``question_codes`` of ``SpokenVQADataModule`` (needs an audio codec in ``vocab``).
        caption_weight: weight of an auxiliary captioning loss on the same images (batches with
            ``caption_tokens``, e.g. the scenes): dense image-dependent supervision that trains the image
            pathway much faster than answers alone; the model then also captions (``<caption>`` prompt).
        init_from: a model to start from (release directory or ``.ckpt``), e.g. the quickstart captioner
            (``configs/vqa_scenes_from_captioner.yaml``): its encoder and decoder are copied and its text
            ids mapped to this model's by vocabulary entry (``grow_from``), so a BPE that also knows the
            question words still starts from the captioner's words.
        num_examples: answers printed per split after testing.
        *args, **kwargs: those of ``TokenTaskModule``; ``vocab`` carries ``"answers"`` for ``"classify"``.
    """

    def __init__(
        self,
        *args: Any,
        head: Literal["generate", "classify"] = "generate",
        pooling: Pooling = "last",
        layout: Literal["image_first", "question_first"] = "image_first",
        question_modality: Literal["text", "audio"] = "text",
        caption_weight: float = 0.0,
        init_from: str | None = None,
        num_examples: int = 8,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if caption_weight < 0 or (caption_weight > 0 and "caption" not in self.space.tasks):
            raise ValueError(f"caption_weight must be >= 0 (> 0 needs a <caption> tag in the TokenSpace); "
                             f"got {caption_weight} with tasks {list(self.space.tasks)}")
        self.caption_weight = caption_weight
        if self.image_encoder is None:
            raise ValueError("VQAModule needs an image_encoder")
        if "vqa" not in self.space.tasks:
            raise ValueError(f"the TokenSpace has no <vqa> tag (tasks: {list(self.space.tasks)})")
        if head not in ("generate", "classify"):
            raise ValueError(f"head must be 'generate' or 'classify', got {head!r}")
        self.head = head
        if question_modality not in ("text", "audio"):
            raise ValueError(f"question_modality must be 'text' or 'audio', got {question_modality!r}")
        if question_modality == "audio" and not isinstance(self.tokenizers.get("audio"), AudioCodecTokenizer):
            raise ValueError("question_modality='audio' needs an audio_codec tokenizer in vocab "
                             "(SpokenVQADataModule gives one)")
        self.question_modality = question_modality
        if layout not in ("image_first", "question_first"):
            raise ValueError(f"layout must be 'image_first' or 'question_first', got {layout!r}")
        if layout == "question_first" and caption_weight > 0:
            raise ValueError("caption_weight needs layout='image_first' (captions share the image prompt)")
        self.layout = layout
        self.answers: list[str] = list(self.hparams.vocab.get("answers") or [])
        self.classifier: ClassifyHead | None = None
        if head == "classify":
            if len(self.answers) < 2:
                raise ValueError("head='classify' needs vocab['answers'] with at least 2 answers")
            self.classifier = ClassifyHead(self.backbone.config.d_model, len(self.answers), pooling)
        self.num_examples = num_examples
        self._outputs: dict[str, list[dict[str, Any]]] = {}
        self.apply_init_from(init_from)

    def question(self, batch: dict[str, Any], index: int) -> Tokens:
        """Question ``index`` of ``batch``: its text ids, or (spoken) its codec codes as audio ids, heard
        whole (a bidirectional prefix, as speech to text hears an utterance)."""
        if self.question_modality == "text":
            return Tokens("text", batch["question_tokens"][index])
        ids = self.tokenizers["audio"].codes_to_ids(batch["question_codes"][index])
        return Tokens("audio", ids, prefix=True)

    def samples(self, batch: dict[str, Any], targets: bool) -> list[list[Segment]]:
        out = []
        for i in range(len(batch["image_index"])):
            source = int(batch["image_index"][i])
            if self.layout == "question_first":
                image = Embeds("image", self.image_tokens, source)
                segments = [Special("<bos>"), Special("<vqa>"), self.question(batch, i), image]
            else:
                segments = self.image_prompt(source, "vqa") + [self.question(batch, i)]
            if self.head == "classify":
                out.append(segments)
            elif targets:
                out.append(segments + [Tokens("text", batch["answer_tokens"][i], target=True)])
            else:
                out.append(segments + [Tokens("text", torch.empty(0, dtype=torch.long), close=False)])
        return out

    # --- training: one row per image ------------------------------------------------------------------
    def shared_prefix(self, batch: dict[str, Any]) -> tuple[SequenceBatch, torch.Tensor, torch.Tensor]:
        """One row per image: its prompt ``<bos> <image>..</image>`` once, then (with ``caption_weight``) a
        ``<caption> caption`` block, then a ``<vqa> question [answer]`` block per question, under a mask
        that lets each block see only the prompt and itself.

        Each question gets exactly the context and RoPE positions it has in its own row (``samples``), so
        the loss is the same, in about half the tokens (an image's ~10 questions share its prompt); the
        caption block is laid out exactly as ``CaptioningModule``'s sample.

        Returns:
            The rows, their positions ``[N, T]`` and the attention mask ``[N, 1, T, T]``.
        """
        rows: list[list[Segment]] = [self.image_prompt(n, "vqa")[:-1] for n in range(len(batch["images"]))]
        if self._captions(batch):
            for row, caption in zip(rows, batch["caption_tokens"]):
                row += [Special("<caption>"), Tokens("text", caption, target=True)]
        for i in range(len(batch["image_index"])):
            block: list[Segment] = [Special("<vqa>"), self.question(batch, i)]
            if self.head == "generate":
                block.append(Tokens("text", batch["answer_tokens"][i], target=True))
            rows[int(batch["image_index"][i])] += block
        longest = max(sum(_length(s) for s in row) for row in rows)
        seq = build_sequences(rows, self.space, max_length=longest, mask=self.mask,
                              loss_weights=self.loss_weights).to(self.device)
        idx = torch.arange(seq.input_ids.shape[1], device=self.device).expand_as(seq.input_ids)  # (N, T)
        starts = self._tag(seq, "vqa") | self._tag(seq, "caption")  # (N, T): the first position of each block
        block = starts.long().cumsum(1)  # (N, T): 0 on the shared prompt, j on block j
        block_start = torch.where(starts, idx, 0).cummax(1).values  # (N, T)
        prompt_len = starts.long().argmax(1, keepdim=True)  # (N, 1)
        positions = torch.where(block > 0, prompt_len + idx - block_start, idx)  # (N, T)
        positions = positions.masked_fill(seq.sample_ids == 0, 0)  # padding, as build_sequences has it
        visible = (block[:, None, :] == 0) | (block[:, None, :] == block[:, :, None])  # (N, T, T)
        mask = build_attention_mask(seq.sample_ids, seq.prefix_blocks) & visible[:, None]  # (N, 1, T, T)
        return seq, positions, mask

    def _captions(self, batch: dict[str, Any]) -> bool:
        return self.caption_weight > 0 and "caption_tokens" in batch

    def _tag(self, seq: SequenceBatch, task: str) -> torch.Tensor:
        """Bool ``[N, T]``: where ``seq`` holds the ``<task>`` tag (all False when the space lacks it)."""
        if task not in self.space.tasks:
            return torch.zeros_like(seq.input_ids, dtype=torch.bool)
        return seq.input_ids == self.space.task(task)

    def loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """The answer loss (LM loss on the answer tokens, or soft-target cross-entropy over the answer
        classes) plus ``caption_weight`` times the captioning loss when the batch has captions."""
        scores = batch.get("answer_scores")
        mean_pooled = self.head == "classify" and self.classifier.pooling == "mean"  # pools the prompt too
        if self.layout == "question_first" or mean_pooled:  # nothing to share: one row per question
            if self.head == "generate":
                return super().loss(batch)
            return _soft_cross_entropy(self.class_logits(batch), scores.to(self.device))
        seq, positions, mask = self.shared_prefix(batch)
        hidden = self.backbone_pass(inputs_embeds=self.embed(seq, batch), positions=positions, attn_mask=mask)
        questions = self._tag(seq, "vqa").long().cumsum(1) > 0  # (N, T): inside question blocks
        if self.head == "generate":
            loss = self.lm_loss(replace(seq, loss_weights=seq.loss_weights * questions), hidden)
        else:
            ends = _block_ends(self._tag(seq, "vqa"), seq.sample_ids > 0)  # (N, T)
            logits = self.classifier(hidden[ends][:, None]).float()  # (Q, K), questions in row order
            loss = _soft_cross_entropy(logits, scores.to(self.device)[_row_order(batch["image_index"])])
        if self._captions(batch):
            caption = self.lm_loss(replace(seq, loss_weights=seq.loss_weights * ~questions), hidden)
            loss = loss + self.caption_weight * caption
        return loss

    # --- the classification head ---------------------------------------------------------------------
    def class_logits(self, batch: dict[str, Any]) -> torch.Tensor:
        """``[Q, K]`` answer-class logits for the batch's questions, one row each (classification head)."""
        seq = self.sequences(batch, targets=False)
        hidden = self.hidden_states(seq, batch)  # (Q, T, d)
        return self.classifier(hidden, seq.sample_ids > 0).float()  # (Q, K)

    # --- answering -----------------------------------------------------------------------------------
    @torch.no_grad()
    def answer(self, batch: dict[str, Any], decoding: DecodingConfig | None = None) -> list[str]:
        """One answer per question of ``batch`` (needs ``images``, ``image_index`` and ``question_tokens``,
        or ``question_codes`` for spoken questions)."""
        if self.head == "classify":
            return [self.answers[k] for k in self.class_logits(batch).argmax(-1).tolist()]
        ids = self.generate_segment(batch, "text", decoding)
        return [self.tokenizers["text"].decode(i).strip() for i in ids]

    @torch.no_grad()
    def ask(
        self,
        images: torch.Tensor,
        questions: list[str] | list[torch.Tensor],
        image_index: list[int] | None = None,
        decoding: DecodingConfig | None = None,
        sample_rate: int | None = None,
    ) -> list[str]:
        """Answers to ``questions`` about ``images`` ``[N, 3, H, W]`` in ``[0, 1]``.

        Args:
            images: the images.
            questions: non-empty strings, or for a spoken-question model (``question_modality="audio"``)
                waves ``[C, T]`` at ``sample_rate``.
            image_index: the image each question is about; default question ``i`` -> image ``i``.
            decoding: generation settings (generative head only).
            sample_rate: of the waves (default the codec's).
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [N, 3, H, W], got shape {tuple(images.shape)}")
        index = list(range(len(questions))) if image_index is None else list(image_index)
        if len(index) != len(questions) or any(not 0 <= i < len(images) for i in index):
            raise ValueError(f"image_index must give each of the {len(questions)} questions an image in "
                             f"[0, {len(images)}), got {index}")
        batch = {"images": images.to(self.device), "image_index": torch.tensor(index, dtype=torch.long)}
        if self.question_modality == "audio":
            if not questions or any(not isinstance(w, torch.Tensor) or w.dim() != 2 for w in questions):
                raise ValueError("this model answers spoken questions: give at least one wave [C, T] each")
            codec = self.media_tokenizers["audio"]
            batch["question_codes"] = [codec.encode(w.to(self.device), sample_rate)[0] for w in questions]
        else:
            if not questions or any(not isinstance(q, str) or not q.strip() for q in questions):
                raise ValueError("ask needs at least one question, each a non-empty string")
            batch["question_tokens"] = self.tokenizers["text"].encode_batch([q.strip() for q in questions])
        return self.answer(batch, decoding)

    # --- evaluation ----------------------------------------------------------------------------------
    def _evaluate(self, batch: dict[str, Any], stage: str) -> None:
        n = len(batch["image_index"])
        self.log(f"{stage}/loss", self.loss(batch), batch_size=n, add_dataloader_idx=False, sync_dist=True)
        keys = ("questions", "answers", "question_types", "image_ids")
        for pred, *values in zip(self.answer(batch), *(batch[k] for k in keys)):
            self._outputs.setdefault(stage, []).append(dict(zip(("pred", *keys), (pred, *values))))

    def _report(self, stage: str) -> dict[str, float]:
        outputs = self._outputs.get(stage, [])
        if not outputs:
            return {}
        scores = vqa_scores([o["pred"] for o in outputs], [o["answers"] for o in outputs],
                            [o["question_types"] for o in outputs])
        for name, value in scores.items():
            key = "acc" if name == "overall" else "acc_" + name.replace("/", "_").replace(" ", "_")
            self.log(f"{stage}/{key}", value, add_dataloader_idx=False, rank_zero_only=True)
        return scores

    def on_validation_epoch_start(self) -> None:
        self._outputs = {}

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self._report("val")
        self._outputs = {}

    def on_test_epoch_start(self) -> None:
        self._outputs = {}

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        split = EVAL_SPLITS[dataloader_idx] if dataloader_idx < len(EVAL_SPLITS) else f"test{dataloader_idx}"
        self._evaluate(batch, split)

    def on_test_epoch_end(self) -> None:
        lines = ["", f"VQA ({self.head} head): answers beside the human answers"]
        for split in list(self._outputs):
            scores = self._report(split)
            lines.append(f"[{split}] accuracy " + "  ".join(f"{k} {v:.4f}" for k, v in scores.items()))
            for o in self._outputs[split][: self.num_examples]:
                lines.append(f"  {o['questions']!r:<40} -> {o['pred']!r:<16} humans: {o['answers'][0]!r}")
        self._outputs = {}
        rank_zero_info("\n".join(lines))

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, str]]:
        return [{"image_id": i, "question": q, "answer": a}
                for i, q, a in zip(batch["image_ids"], batch["questions"], self.answer(batch))]


def _length(segment: Segment) -> int:
    """Positions a segment takes in a row (its ids or placeholders plus begin/end markers)."""
    if isinstance(segment, Special):
        return 1
    if isinstance(segment, Embeds):
        return segment.length + 2
    return len(segment.ids) + 1 + int(segment.close)


def _block_ends(starts: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Bool ``[N, T]``: the last valid position of each question block (a block ends where the next
    starts, or at the row's last valid position)."""
    next_starts = torch.zeros_like(starts)
    next_starts[:, :-1] = starts[:, 1:]
    next_valid = torch.zeros_like(valid)
    next_valid[:, :-1] = valid[:, 1:]
    in_block = starts.long().cumsum(1) > 0
    return in_block & valid & (next_starts | ~next_valid)


def _row_order(image_index: torch.Tensor) -> torch.Tensor:
    """Question order of ``shared_prefix`` rows: by image, keeping the batch order within an image."""
    return torch.sort(torch.as_tensor(image_index), stable=True).indices


def _soft_cross_entropy(logits: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``logits`` ``[Q, K]`` against the VQA soft scores ``[Q, K]`` normalised per question;
    questions none of whose human answers is a class are left out."""
    total = scores.sum(-1, keepdim=True)  # (Q, 1)
    per_question = -(scores / total.clamp(min=1e-8) * F.log_softmax(logits, dim=-1)).sum(-1)  # (Q,)
    return per_question.sum() / (total.squeeze(-1) > 0).sum().clamp(min=1)
