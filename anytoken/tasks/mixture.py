"""Any-to-any: one ``AnytokenModel`` trained on a weighted mixture of tasks across modalities, with one
format per task, each scored by its own evaluation (``split/task/metric``). Training builds each task's
samples from its template or its format, weights each sample's loss by its task's ``loss_weight`` and packs
them into rows, all scored by the one LM head (a format's own heads are for single-task models). See
``docs/any_to_any.md``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.strategies import DDPStrategy

from anytoken.heads import LMHead
from anytoken.models import TaskFormat
from anytoken.models.templates import TemplateFormat
from anytoken.tasks import (  # noqa: F401 - each registers the evaluation of its task's format kind
    captioning,
    forecasting,
    pose_estimation,
    speech,
    tables,
    text_to_image,
    vqa,
)
from anytoken.tasks.module import TokenTaskModule
from anytoken.tokenizers.sequence import Embeds, Segment, SequenceBatch, Tokens

Pairs = list[tuple[str, dict[str, Any]]]
Media = dict[str, torch.Tensor]


class MixtureModule(TokenTaskModule):
    """Trains one model on every task of a ``MixtureDataModule``: training batches are lists of
    ``(task, batch)`` pairs; validation/test get one task's batches per dataloader (``eval_names``).

    Args:
        vocab: the ``MixtureDataModule``'s vocab; ``vocab["tasks"]`` holds each task's format spec, template
            and loss weight.
        packing: pack the samples of a training batch into rows (first-fit) instead of one padded row each.
        **kwargs: those of ``TokenTaskModule`` (``init_from`` grows a smaller model into the mixture).
    """

    def __init__(self, vocab: dict[str, Any], packing: bool = True, **kwargs: Any) -> None:
        tasks = vocab.get("tasks")
        if not tasks:
            raise ValueError("MixtureModule needs vocab['tasks'] (build it with MixtureDataModule)")
        formats = {name: task.get("format") or {"kind": "template", "items": task["template"]}
                   for name, task in tasks.items()}
        model_vocab = {k: v for k, v in vocab.items() if k != "tasks"}
        super().__init__(model_vocab, formats=formats, **kwargs)
        if type(self.model.lm_head) is not LMHead:
            raise ValueError(f"a mixture shares one LM head, but a task's format set a "
                             f"{type(self.model.lm_head).__name__} (single-task models only)")
        self.packing = packing
        self.task_loss_weights = {name: float(task.get("loss_weight", 1.0)) for name, task in tasks.items()}
        self.layouts: dict[str, TaskFormat] = dict(self.model.formats)  # what each task trains from
        for name, task in tasks.items():
            if task.get("format") and task.get("template"):  # trained from its template, scored by its format
                self.layouts[name] = TemplateFormat(task["template"])
                self.layouts[name].bind(self.model)

    def setup(self, stage: str) -> None:
        """Also: on several DDP processes, refuse a DDP that expects every parameter in every step (a step
        that draws no image task leaves the image encoder out). Every process draws the same tasks, so such
        parameters are unused on all of them and keep no gradient, as on one process."""
        super().setup(stage)
        strategy = self.trainer.strategy
        if (stage == "fit" and isinstance(strategy, DDPStrategy) and strategy.world_size > 1
                and not getattr(strategy, "_ddp_kwargs", {}).get("find_unused_parameters")):
            raise MisconfigurationException("a mixture's steps leave the parameters of undrawn tasks unused: "
                                            "train it on several processes with --trainer.strategy "
                                            "ddp_find_unused_parameters_true")

    def metric_name(self, task: str, split: str, metric: str) -> str:
        """``split/task/metric``, even for a mixture of one task."""
        return f"{split}/{task}/{metric}"

    # --- samples of several tasks in one batch ---------------------------------------------------------
    def collect(self, pairs: Pairs) -> tuple[list[list[Segment]], list[float], Media]:
        """``(samples, weights, media)``: all pairs' training samples, their image sources offset into
        ``media["images"]`` ``[N, 3, S, S]`` (the images of every pair whose samples embed them, in order),
        and one weight per sample (its task's ``loss_weight``)."""
        samples: list[list[Segment]] = []
        weights: list[float] = []
        images: list[torch.Tensor] = []
        for name, batch in pairs:
            if name not in self.layouts:
                raise ValueError(f"unknown task {name!r}; this mixture has {list(self.layouts)}")
            task_samples = self.layouts[name].samples(self.model, batch, True)
            if not any(isinstance(segment, Tokens) and segment.target for segment in task_samples[0]):
                raise ValueError(f"task {name!r}: its samples have no target tokens (a head of its own, as "
                                 "VQA's classify, is for single-task models): give the entry a template")
            offset = sum(len(x) for x in images)
            if any(isinstance(segment, Embeds) for sample in task_samples for segment in sample):
                images.append(batch["images"])
            samples += [[_shifted(segment, offset) for segment in sample] for sample in task_samples]
            weights += [self.task_loss_weights[name]] * len(task_samples)
        return samples, weights, {"images": torch.cat(images)} if images else {}

    def rows(self, pairs: Pairs) -> tuple[SequenceBatch, Media]:
        """The training rows of ``pairs`` (packed when ``packing``) and the media they embed."""
        samples, weights, media = self.collect(pairs)
        return self.model.sequences(samples, sample_weights=weights, pack=self.packing), media

    def training_step(self, batch: Pairs, batch_idx: int) -> torch.Tensor:
        seq, media = self.rows(batch)
        loss = self.model.lm_loss(seq, self.model.hidden_states(seq, self.model.embed(seq, media)))
        samples = int(seq.sample_ids.amax(dim=1).sum())
        self.log("train/loss", loss, prog_bar=True, batch_size=samples)
        self.log("train/tokens", float((seq.sample_ids > 0).sum()), batch_size=samples, reduce_fx="sum")
        return loss


def _shifted(segment: Segment, offset: int) -> Segment:
    """``segment`` with its media source moved by ``offset`` (images of earlier pairs come first)."""
    if not isinstance(segment, Embeds):
        return segment
    if segment.modality != "image":
        raise ValueError(f"in a mixture only images enter as embeddings, not {segment.modality!r} "
                         "(e.g. use audio_layout: flatten for speech)")
    return replace(segment, source=segment.source + offset)
