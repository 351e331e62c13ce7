"""``TokenTaskModule``: the LightningModule that trains an ``AnytokenModel`` (``self.model``): optimiser,
schedule, loss weighting and the validation/test loop over each task's ``Evaluation``. A task subclass
only says which format it trains (``formats``) from its own arguments."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
import torch.nn as nn
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from anytoken.backbone import TransformerConfig
from anytoken.checkpoint import MODEL_KEY, load
from anytoken.heads import DecodingConfig
from anytoken.loading import jsonable
from anytoken.models import AnytokenModel
from anytoken.models.formats import check_choice
from anytoken.models.growth import grow_into
from anytoken.tasks.evaluation import Evaluation, evaluation_for
from anytoken.tasks.ranks import gather_outputs, rng_states, set_rng_states
from anytoken.tokenizers.base import Tokenizer
from anytoken.tokenizers.image_encoder import ImageEncoderConfig
from anytoken.tokenizers.space import TokenSpace

VAL_SPLITS, EVAL_SPLITS = ("val",), ("test", "heldout")  # dataloader names when the DataModule gives none
RNG_KEY = "anytoken_rng_states"  # checkpoint key: every process's RNG states (anytoken.tasks.ranks)


def adamw_warmup_cosine(
    params: Iterable[nn.Parameter], lr: float, betas: tuple[float, float], weight_decay: float,
    warmup_steps: int, total_steps: int,
) -> tuple[torch.optim.AdamW, dict[str, Any]]:
    """AdamW with weight decay on matrices and kernels only (not norms or biases), and its per-step
    ``WarmupCosine`` schedule as Lightning's scheduler dict."""
    params = [p for p in params if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=lr, betas=betas)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, WarmupCosine(warmup_steps, total_steps))
    return opt, {"scheduler": sched, "interval": "step"}


class WarmupCosine:
    """LR factor: linear warm-up over ``min(warmup_steps, total / 2)`` steps, then cosine decay to 10%.
    A class rather than a closure, so schedulers pickle (spawned DDP workers, checkpoint callbacks)."""

    def __init__(self, warmup_steps: int, total_steps: int) -> None:
        self.total = max(total_steps, 1)
        self.warmup = min(warmup_steps, self.total // 2)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min((step - self.warmup) / max(self.total - self.warmup, 1), 1.0)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


class TokenTaskModule(L.LightningModule):
    """Trains ``self.model`` on the tasks of its ``formats``.

    Args:
        vocab: the DataModule's ``vocab`` (TokenSpace layout, tokenizer specs); the CLI links it.
        backbone, image_encoder, projector, image_positions, mask, decoding: the model's (see
            ``AnytokenModel``; ``decoding`` is how validation, test and predict generate).
        loss_weights: modality -> weight of its target tokens in the loss.
        lr: peak AdamW learning rate (linear warm-up, cosine decay to 10%).
        weight_decay: AdamW weight decay on matrices (not on norms or biases).
        warmup_steps: linear warm-up steps.
        input_dropout: while training, the fraction of target-segment *input* tokens noised: the model
            must read the media rather than lean on the text so far.
        input_noise: what replaces them: ``"pad"`` (word dropout) or ``"unigram"`` (a token drawn from the
            batch's targets, at their frequencies; ``AnytokenModel.dropped_inputs``).
        compile: run the backbone's teacher-forced passes through ``torch.compile`` (dynamic shapes);
            generation stays eager; weights and checkpoints are the same either way.
        init_from: a model to start from (release directory or ``.ckpt``): its weights are copied and its
            token ids mapped into this TokenSpace (``anytoken.models.growth.grow_into``).
        num_examples: outputs printed per split after testing.
        formats: task name -> format spec; a task subclass fills it from its own arguments.
    """

    def __init__(
        self,
        vocab: dict[str, Any],
        backbone: TransformerConfig | None = None,
        image_encoder: ImageEncoderConfig | None = None,
        projector: Literal["linear", "mlp"] = "mlp",
        image_positions: bool = False,
        mask: Literal["causal", "prefix"] = "prefix",
        loss_weights: dict[str, float] | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_steps: int = 100,
        decoding: DecodingConfig | None = None,
        input_dropout: float = 0.0,
        input_noise: Literal["pad", "unigram"] = "pad",
        compile: bool = False,
        init_from: str | None = None,
        num_examples: int = 8,
        formats: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["formats"])  # a task subclass derives them from its own args
        for key, value in self.hparams.items():  # plain data, so checkpoints load with weights_only=True
            self.hparams[key] = jsonable(value)
        if not 0.0 <= input_dropout < 1.0:
            raise ValueError(f"input_dropout must be in [0, 1), got {input_dropout}")
        check_choice("input_noise", input_noise, ("pad", "unigram"))
        self.model = AnytokenModel(vocab, formats, backbone, image_encoder, projector, image_positions, mask,
                                   decoding)
        self.model.loss_weights = dict(loss_weights or {})
        self.model.input_dropout, self.model.input_noise = input_dropout, input_noise
        self.compile_backbone = compile  # not `self.compile`: that would hide nn.Module.compile()
        self.evaluations: dict[str, Evaluation] = {
            name: evaluation_for(fmt, num_examples) for name, fmt in self.model.formats.items()
        }
        self._outputs: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._rng_to_restore: list[dict[str, Any]] | None = None
        if init_from:
            try:
                source = load(init_from)
            except FileNotFoundError as err:
                raise FileNotFoundError(f"no model to start from ({err}): train it first (./quickstart.sh "
                                        "writes the captioner release runs/caption_scenes/release)") from None
            grow_into(source, self.model)
            self.hparams["init_from"] = None  # checkpoints and releases carry the grown weights

    # --- the model's tasks ---------------------------------------------------------------------------
    @property
    def space(self) -> TokenSpace:
        return self.model.space

    @property
    def task_name(self) -> str:
        """The one task of a single-task module."""
        if len(self.model.formats) != 1:
            raise ValueError(f"{type(self).__name__} trains {len(self.model.formats)} tasks: name one")
        return next(iter(self.model.formats))

    def loss(self, batch: Any) -> torch.Tensor:
        """The training loss of a batch (single-task: its format's loss)."""
        return self.model.formats[self.task_name].loss(self.model, batch)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        samples = self.model.formats[self.task_name].num_samples(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=samples)
        return loss

    # --- Lightning hooks around the model -------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Take trained media tokenizer weights (e.g. the codec that made the training tokens) from the
        DataModule(s)."""
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        for dm in [datamodule, *getattr(datamodule, "datamodules", {}).values()]:
            self.adopt_media_tokenizers(dm)

    def adopt_media_tokenizers(self, datamodule: Any) -> None:
        """Copy into the model the weights of every trainable tokenizer ``datamodule`` holds as an attribute
        whose type and config match one of the model's."""
        for value in vars(datamodule).values() if datamodule is not None else ():
            if isinstance(value, Tokenizer) and isinstance(value, nn.Module):
                for mine in self.model.media_tokenizers.values():
                    if type(mine) is type(value) and mine.config() == value.config():
                        mine.load_state_dict(value.state_dict())

    def configure_model(self) -> None:
        if self.compile_backbone:
            self.model.compile_backbone()

    def configure_optimizers(self) -> dict[str, Any]:
        hp, total = self.hparams, int(self.trainer.estimated_stepping_batches)
        opt, sched = adamw_warmup_cosine(self.parameters(), hp.lr, (0.9, 0.95), hp.weight_decay,
                                         hp.warmup_steps, total)
        return {"optimizer": opt, "lr_scheduler": sched}

    def export(self, directory: str | Path) -> Path:
        """Write the model as a release directory (``anytoken.load`` reads it)."""
        return self.model.save_pretrained(directory)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[MODEL_KEY] = self.model.config()
        checkpoint[RNG_KEY] = rng_states()  # every process saves (Lightning's rule), so they can gather

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        config = checkpoint.get(MODEL_KEY)
        if isinstance(config, dict) and "vocab" in config:
            self.space.check_same(TokenSpace.from_dict(config["vocab"]["token_space"]), "checkpoint")
        self._rng_to_restore = checkpoint.get(RNG_KEY)

    def on_train_start(self) -> None:
        """A resumed run takes back each process's RNG states here, after the sanity check has drawn from
        them, so dropout and sampled conditions continue as in the uninterrupted run."""
        if self._rng_to_restore is not None and not set_rng_states(self._rng_to_restore, self.global_rank):
            rank_zero_warn("the checkpoint's RNG states come from another number of processes: not restored")
        self._rng_to_restore = None

    # --- evaluation: written once for every task ------------------------------------------------------
    def eval_loader(self, stage: str, dataloader_idx: int) -> tuple[str, str]:
        """``(task, split)`` of a validation or test dataloader; the DataModule names its test splits
        (``val_splits``, ``test_splits``), a mixture's DataModule each loader's task too (``eval_names``)."""
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        names = getattr(datamodule, "eval_names", None)
        if names is not None:
            return names(stage)[dataloader_idx]
        if stage == "val":
            splits = getattr(datamodule, "val_splits", VAL_SPLITS)
        else:
            splits = getattr(datamodule, "test_splits", EVAL_SPLITS)
        split = splits[dataloader_idx] if dataloader_idx < len(splits) else f"{stage}{dataloader_idx}"
        return self.task_name, split

    def metric_name(self, task: str, split: str, metric: str) -> str:
        """``split/metric``; a module of several tasks adds the task: ``split/task/metric``."""
        return f"{split}/{metric}" if len(self.model.formats) == 1 else f"{split}/{task}/{metric}"

    def _evaluate(self, stage: str, batch: Any, dataloader_idx: int) -> None:
        task, split = self.eval_loader(stage, dataloader_idx)
        fmt = self.model.formats[task]
        self.log(self.metric_name(task, split, "loss"), fmt.loss(self.model, batch),
                 batch_size=fmt.num_samples(batch), add_dataloader_idx=False, sync_dist=True)
        self._outputs.setdefault((task, split), []).extend(self.evaluations[task].step(self.model, batch))

    def _report(self, show: bool) -> None:
        """Each split's metrics over the outputs of every process (the same values logged by each)."""
        lines = []
        for (task, split), outputs in gather_outputs(self._outputs).items():
            evaluation = self.evaluations[task]
            metrics = evaluation.report(outputs)
            self.log_dict({self.metric_name(task, split, k): v for k, v in metrics.items()},
                          add_dataloader_idx=False, sync_dist=True)  # equal everywhere: the mean is each
            if show:
                lines.append(f"[{split}] {task}: " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
                lines += evaluation.examples(outputs)
        self._outputs = {}
        if lines:
            rank_zero_info("\n".join(["", *lines]))

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate("val", batch, dataloader_idx)

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate("test", batch, dataloader_idx)

    def on_validation_epoch_start(self) -> None:
        self._outputs = {}

    on_test_epoch_start = on_validation_epoch_start

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self._outputs = {}
        else:
            self._report(show=False)

    def on_test_epoch_end(self) -> None:
        self._report(show=True)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        return self.evaluations[self.task_name].predict(self.model, batch)
