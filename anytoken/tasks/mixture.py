"""Any-to-any: one backbone trained on a weighted mixture of tasks across modalities at once.

The TokenSpace is the union of every task's vocabulary (``MixtureDataModule.vocab``); the backbone, the
LM head, the image encoder + projector and the frozen media tokenizers exist once. Each task with a
``module`` entry also gets an instance of its own task class (``CaptioningModule``, ``PoseEstimationModule``,
...) whose backbone, head, encoder and tokenizers *are* the shared ones: its own code generates and scores
it (``caption``, ``predict_keypoints``, ``forecast``, its validation/test hooks), and what it logs lands
under ``STAGE/TASK/METRIC`` (``val/pose/pck@0.1``). Training builds each task's samples from its template
(data, ``anytoken.models.templates``) or, without one, its module's ``samples``, weights each sample's loss
by its task's ``loss_weight`` and packs the samples of all tasks into rows (``packing``; attention never
crosses samples, positions restart per sample).

Prompts may interleave anything the TokenSpace allows: ``complete`` continues hand-built segments (an image
then ``<pose_estimation>`` gives keypoint tokens, the same image then ``<caption>`` gives text).
"""

from __future__ import annotations

import inspect
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from anytoken.heads import DecodingConfig, LMHead
from anytoken.tasks.data.mixture import import_class
from anytoken.tasks.module import TokenTaskModule, as_model
from anytoken.models.templates import Template
from anytoken.tokenizers.base import SegmentGrammar
from anytoken.tokenizers.sequence import IGNORE_INDEX, Embeds, Segment, SequenceBatch, Tokens, build_sequences

SHARED = ("backbone", "lm_head", "image_encoder", "projector", "media_tokenizers")
COMMON_ARGS = ("backbone", "projector", "image_positions", "mask", "loss_weights", "lr", "weight_decay",
               "warmup_steps", "decoding", "input_dropout")
Pairs = list[tuple[str, dict[str, Any]]]


class _TaskLog:
    """A task module's ``log``: ``"val/bleu"`` -> the mixture's ``"val/TASK/bleu"``."""

    def __init__(self, mixture: MixtureModule, task: str) -> None:
        self.mixture, self.task = mixture, task

    def __call__(self, name: str, value: Any, **kwargs: Any) -> None:
        stage, _, metric = name.partition("/")
        key = f"{stage}/{self.task}/{metric}" if metric else f"{self.task}/{stage}"
        self.mixture.log(key, value, **{**kwargs, "add_dataloader_idx": False})


class MixtureModule(TokenTaskModule):
    """One model for every task of a ``MixtureDataModule``.

    Batches: training gets lists of ``(task, batch)`` pairs; validation/test get one task's batches per
    dataloader. ``vocab["tasks"]`` (from the DataModule) holds each task's module class path and arguments,
    template, loss weight and own modalities.

    Args:
        packing: pack the samples of a training batch into rows (first-fit) instead of one padded row each.
        init_from: a single-task (or smaller) model's release directory or ``.ckpt`` to start from: its
            weights are copied and the vocabulary grown (``grow_from``).
        *args, **kwargs: those of ``TokenTaskModule``; the task modules get the same backbone, projector,
            mask, optimiser and decoding settings, then their entry's ``module_args``.
    """

    def __init__(self, *args: Any, packing: bool = True, init_from: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        tasks = self.hparams.vocab.get("tasks")
        if not tasks:
            raise ValueError("MixtureModule needs vocab['tasks'] (build it with MixtureDataModule)")
        self.packing = packing
        self.task_names = list(tasks)
        self.templates: dict[str, Template] = {}
        self.task_modules: dict[str, TokenTaskModule] = {}
        self.uses_images: dict[str, bool] = {}
        self.task_loss_weights = {name: float(t.get("loss_weight", 1.0)) for name, t in tasks.items()}
        for name, task in tasks.items():
            if task.get("template"):
                self.templates[name] = self._template(name, task["template"])
            if task.get("module"):
                self.task_modules[name] = self._task_module(name, task)
                self.add_module(f"task_{name}", self.task_modules[name])
            self.uses_images[name] = (
                any(i.embeds for i in self.templates[name].items if not isinstance(i, str))
                if name in self.templates
                else self.task_modules[name].image_encoder is not None
            )
        self.apply_init_from(init_from)

    # --- building --------------------------------------------------------------------------------------
    def _template(self, name: str, items: list[Any]) -> Template:
        template = Template(items)
        missing = [s for s in template.specials if s not in self.space.specials]
        unknown = [m for m in template.modalities if m not in self.space.modalities]
        if missing or unknown:
            raise ValueError(f"task {name!r}: the template uses {missing + unknown}, not in the TokenSpace")
        return template

    def _task_module(self, name: str, task: dict[str, Any]) -> TokenTaskModule:
        """The task's own module class, built on the union vocabulary, then given the shared parts."""
        cls = import_class(task["module"])
        if not (isinstance(cls, type) and issubclass(cls, TokenTaskModule)):
            raise ValueError(f"task {name!r}: {task['module']} is not a TokenTaskModule")
        hp = self.hparams
        kwargs = {k: hp[k] for k in COMMON_ARGS if k in hp}
        if task.get("modalities", {}).get("image") == 0:  # images enter that task as encoder features
            kwargs["image_encoder"] = hp.get("image_encoder")
        vocab = {k: v for k, v in hp.vocab.items() if k != "tasks"}
        module = cls(vocab=vocab, **{**kwargs, **(task.get("module_args") or {})})
        if type(module.lm_head) is not LMHead:
            raise ValueError(f"task {name!r}: a mixture shares one LM head; {type(module.lm_head).__name__} "
                             "heads are for single-task models")
        if module.image_encoder is not None and self.image_encoder is None:
            raise ValueError(f"task {name!r} reads image features: give the mixture an image_encoder")
        for attr in SHARED:  # drop the module's own copies; it reads the mixture's (unregistered there)
            had = getattr(module, attr, None)
            module._modules.pop(attr, None)
            object.__setattr__(module, attr, None if had is None else getattr(self, attr))
        module.tokenizers = self.tokenizers
        object.__setattr__(module, "log", _TaskLog(self, name))
        return module

    def task(self, name: str) -> TokenTaskModule:
        """Task ``name``'s module, sharing this model's weights: ``mixture.task("caption").caption(x)``."""
        if name not in self.task_modules:
            raise ValueError(f"no task module named {name!r}; this mixture has {list(self.task_modules)}")
        return self.task_modules[name]

    def setup(self, stage: str) -> None:
        """Take trained media tokenizer weights (e.g. a speech codec) from the task DataModules."""
        if self._trainer is not None:
            datamodules = getattr(self.trainer.datamodule, "datamodules", {})
            self.adopt_media_tokenizers(list(datamodules.values()))
            for name, module in self.task_modules.items():  # each task reads its own splits' names
                module.task_datamodule = datamodules.get(name)

    def grow_from(self, source: str | Path | TokenTaskModule) -> dict[str, Any]:
        """``TokenTaskModule.grow_from``; the source's task-specific weights also go to the task module
        of the same class."""
        source = as_model(source)
        report = super().grow_from(source)
        own = {k: v for k, v in source.state_dict().items() if k.split(".")[0] not in SHARED}
        for module in self.task_modules.values():
            if type(module) is type(source) and own:
                module.load_state_dict(own, strict=False)
        return report

    # --- samples of several tasks in one batch ---------------------------------------------------------
    def task_samples(self, name: str, batch: dict[str, Any], targets: bool) -> list[list[Segment]]:
        """Task ``name``'s samples of ``batch``: from its template, or else its module's ``samples``."""
        if name in self.templates:
            tokens = self.image_encoder.num_tokens if self.image_encoder is not None else None
            return self.templates[name].samples(batch, targets, self.tokenizers, tokens)
        return self.task_modules[name].samples(batch, targets)

    def _collect(self, pairs: Pairs, targets: bool) -> tuple[list[list[Segment]], list[float]]:
        """All pairs' samples (image sources offset into ``media``'s concatenated images) and weights."""
        samples: list[list[Segment]] = []
        weights: list[float] = []
        offset = 0
        for name, batch in pairs:
            if name not in self.task_loss_weights:
                raise ValueError(f"unknown task {name!r}; this mixture has {self.task_names}")
            for sample in self.task_samples(name, batch, targets):
                samples.append([_shifted(segment, offset) for segment in sample])
            weights += [self.task_loss_weights[name]] * (len(samples) - len(weights))
            offset += len(batch["images"]) if self.uses_images[name] else 0
        return samples, weights

    def media(self, pairs: Pairs) -> dict[str, torch.Tensor]:
        """``{"images": [N, 3, S, S]}``: the images of every pair whose samples embed them, in order."""
        images = [batch["images"] for name, batch in pairs if self.uses_images[name]]
        return {"images": torch.cat(images)} if images else {}

    def sequences(self, batch: Pairs | dict[str, Any], targets: bool = True, **kwargs: Any) -> SequenceBatch:
        """Rows of a list of ``(task, batch)`` pairs, or of ``{"prompts": [segments...], "images"?}``."""
        if isinstance(batch, dict):
            if "prompts" not in batch:
                raise ValueError("a mixture batch is a list of (task, batch) pairs or a dict with 'prompts'")
            samples, weights = list(batch["prompts"]), None
        else:
            samples, weights = self._collect(batch, targets)
        pack = self.packing and targets and kwargs.get("padding_side", "right") == "right"
        return build_sequences(
            samples,
            self.space,
            max_length=self.backbone.config.max_seq_len,
            mask=self.mask,
            loss_weights=self.loss_weights,
            sample_weights=weights,
            pack=pack,
            **kwargs,
        ).to(self.device)

    def embed(self, seq: SequenceBatch, media: Pairs | dict[str, Any]) -> torch.Tensor:
        return super().embed(seq, self.media(media) if isinstance(media, list) else media)

    def training_step(self, batch: Pairs, batch_idx: int) -> torch.Tensor:
        seq = self.sequences(batch)
        loss = self.lm_loss(seq, self.hidden_states(seq, batch))
        samples = int(seq.sample_ids.amax(dim=1).sum())
        self.log("train/loss", loss, prog_bar=True, batch_size=samples)
        self.log("train/tokens", float((seq.sample_ids > 0).sum()), batch_size=samples, reduce_fx="sum")
        return loss

    # --- prompting -------------------------------------------------------------------------------------
    @torch.no_grad()
    def complete(
        self,
        prompts: list[list[Segment]],
        modality: str,
        images: torch.Tensor | None = None,
        decoding: DecodingConfig | None = None,
        grammar: SegmentGrammar | None = None,
    ) -> list[torch.Tensor]:
        """Continue hand-built prompts with one ``modality`` segment each; local ids per prompt.

        Args:
            prompts: segments per sample, e.g. ``[Special("<bos>"), Embeds("image", n, 0),
                Special("<pose_estimation>")]``; an open ``modality`` segment is appended when missing.
            modality: what to generate (its tokenizer's grammar constrains it unless ``grammar`` is given).
            images: ``[N, 3, S, S]`` in ``[0, 1]``, indexed by the prompts' ``Embeds`` sources.
            decoding: how tokens are chosen (default the model's; its token budget is raised to fit a
                fixed-length grammar such as a pose's).
            grammar: overrides the tokenizer's grammar.
        """
        grammar = grammar or self.tokenizers[modality].grammar()
        decoding = decoding or self.decoding
        if grammar.max_length is not None and decoding.max_new_tokens <= grammar.max_length:
            decoding = replace(decoding, max_new_tokens=grammar.max_length + 1)
        prompts = [list(p) for p in prompts]
        for p in prompts:
            last = p[-1] if p else None
            if not (isinstance(last, Tokens) and last.modality == modality and not last.close):
                p.append(Tokens(modality, torch.empty(0, dtype=torch.long), close=False))
        batch: dict[str, Any] = {"prompts": prompts}
        if images is not None:
            batch["images"] = images.to(self.device)
        return self.generate_segment(batch, modality, decoding, grammar)

    # --- evaluation: each task's own code, or loss and token accuracy ----------------------------------
    def _evaluate(self, name: str, batch: dict[str, Any], batch_idx: int, split: str, index: int) -> None:
        module = self.task_modules.get(name)
        if module is not None:
            if split == "val":
                module.validation_step(batch, batch_idx)
            elif "dataloader_idx" in inspect.signature(module.test_step).parameters:
                module.test_step(batch, batch_idx, dataloader_idx=index)
            else:
                module.test_step(batch, batch_idx)
            return
        pairs = [(name, batch)]
        seq = self.sequences(pairs)
        hidden = self.hidden_states(seq, pairs)  # (B, T, d)
        keep = seq.targets != IGNORE_INDEX
        accuracy = (self.lm_head(hidden[keep]).argmax(-1) == seq.targets[keep]).float().mean()
        split = split if index == 0 else f"{split}{index}"
        n = self.templates[name].num_samples(batch)
        self.log(f"{split}/{name}/loss", self.lm_loss(seq, hidden), batch_size=n, add_dataloader_idx=False)
        self.log(f"{split}/{name}/token_accuracy", accuracy, batch_size=n, add_dataloader_idx=False)

    def on_validation_epoch_start(self) -> None:
        for module in self.task_modules.values():
            module.on_validation_epoch_start()

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(self.task_names[dataloader_idx], batch, batch_idx, "val", 0)

    def on_validation_epoch_end(self) -> None:
        for module in self.task_modules.values():
            module.on_validation_epoch_end()

    def on_test_epoch_start(self) -> None:
        for module in self.task_modules.values():
            module.on_test_epoch_start()

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        names = getattr(self.trainer.datamodule, "test_names", None)
        name, index = names[dataloader_idx] if names else (self.task_names[dataloader_idx], 0)
        self._evaluate(name, batch, batch_idx, "test", index)

    def on_test_epoch_end(self) -> None:
        for module in self.task_modules.values():
            module.on_test_epoch_end()


def _shifted(segment: Segment, offset: int) -> Segment:
    """``segment`` with its media source moved by ``offset`` (images of earlier pairs come first)."""
    if not isinstance(segment, Embeds):
        return segment
    if segment.modality != "image":
        raise ValueError(f"in a mixture only images enter as embeddings, not {segment.modality!r} "
                         "(e.g. use audio_layout: flatten for speech)")
    return replace(segment, source=segment.source + offset)
