"""Training any trainable tokenizer (the image VQ tokenizer, the audio codec) with Lightning.

A trainable tokenizer (``ImageVQTokenizer`` is the reference) is an ``nn.Module`` and a registered
``Tokenizer`` with ``loss(x, step) -> TokenizerOutput`` (loss, scalar ``metrics``, the code histogram
``counts`` ``[num_codebooks, codebook_size]``, the ``reconstruction``), ``reconstruction_metrics(x,
reconstruction)`` and ``write_media``, which writes inputs beside their reconstructions (concatenated along
the last axis) to ``LOG_DIR/samples/`` as ``sample_suffix`` files (default ``".png"``), reconstructions
clamped to ``sample_range`` (default ``(0, 1)``). An optional ``discriminator`` module with
``discriminator_loss(x, reconstruction)`` gets a second optimiser, stepped after the tokenizer's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn as nn
from lightning.pytorch.utilities import rank_zero_only

from anytoken.atomic import atomic_path
from anytoken.tasks.callbacks import ExportRelease
from anytoken.tasks.module import adamw_warmup_cosine
from anytoken.tokenizers.base import tokenizer_from_spec
from anytoken.tokenizers.quantizers import TokenizerOutput, usage_and_perplexity


class TokenizerTrainingModule(L.LightningModule):
    """Train a tokenizer through its ``loss(x)``. Validation reports, per loader (``datamodule.val_names``),
    the loss terms and reconstruction metrics, and over all of them the codebook usage and perplexity.
    Optimisation is manual: clip with ``grad_clip``, not the Trainer's ``gradient_clip_val``; with a
    discriminator ``global_step`` counts both optimisers' steps (``max_steps`` means half as many batches).

    Args:
        tokenizer: its spec, ``{"tokenizer": NAME, "config": {...}}`` (``Tokenizer.spec()``'s form).
        lr: peak AdamW learning rate of the tokenizer (warm-up, then cosine decay to 10%).
        disc_lr: learning rate of the discriminator (default ``lr``).
        betas: AdamW betas (VQGAN uses (0.5, 0.9)).
        weight_decay: AdamW weight decay on matrices and kernels.
        warmup_steps: linear warm-up steps.
        grad_clip: clip the gradient norm of each optimiser to this (None: no clipping).
        num_samples: media pairs written to the sample grid at each validation.
    """

    def __init__(
        self,
        tokenizer: dict[str, Any],
        lr: float = 1e-3,
        disc_lr: float | None = None,
        betas: tuple[float, float] = (0.5, 0.9),
        weight_decay: float = 0.0,
        warmup_steps: int = 100,
        grad_clip: float | None = 1.0,
        num_samples: int = 8,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.tokenizer = tokenizer_from_spec(tokenizer)
        if not isinstance(self.tokenizer, nn.Module) or not callable(getattr(self.tokenizer, "loss", None)):
            raise ValueError(f"tokenizer {self.tokenizer.name!r} is not trainable "
                             "(needs an nn.Module with loss(x))")
        self.automatic_optimization = False
        self._reset()

    @property
    def discriminator(self) -> nn.Module | None:
        return getattr(self.tokenizer, "discriminator", None)

    @property
    def batches_seen(self) -> int:
        """Training batches so far (``global_step`` counts the steps of every optimiser)."""
        return self.global_step // (2 if self.discriminator is not None else 1)

    # --- training ------------------------------------------------------------------------------------
    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        optimizers = self.optimizers()
        opt_g, opt_d = optimizers if isinstance(optimizers, list) else (optimizers, None)
        out: TokenizerOutput = self.tokenizer.loss(batch, step=self.batches_seen)
        self._step(opt_g, out.loss)
        self.lr_schedulers().step()
        logs = {"train/loss": out.loss.detach()} | {f"train/{k}": v for k, v in out.metrics.items()}
        if opt_d is not None:
            d_loss = self.tokenizer.discriminator_loss(batch, out.reconstruction)
            self._step(opt_d, d_loss)
            logs["train/disc_loss"] = d_loss.detach()
        self.log_dict(logs, prog_bar=False, batch_size=len(batch))
        self.log("loss", out.loss.detach(), prog_bar=True, logger=False, batch_size=len(batch))
        return out.loss.detach()

    def _step(self, optimizer: Any, loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if self.hparams.grad_clip is not None:
            self.clip_gradients(optimizer, self.hparams.grad_clip, gradient_clip_algorithm="norm")
        optimizer.step()

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        disc = {id(p) for p in self.discriminator.parameters()} if self.discriminator is not None else set()
        params = [p for p in self.tokenizer.parameters() if id(p) not in disc]
        opt_g, sched = adamw_warmup_cosine(params, hp.lr, tuple(hp.betas), hp.weight_decay, hp.warmup_steps,
                                           int(self.trainer.estimated_stepping_batches))
        if self.discriminator is None:
            return {"optimizer": opt_g, "lr_scheduler": sched}
        opt_d = torch.optim.AdamW(self.discriminator.parameters(), lr=hp.disc_lr or hp.lr,
                                  betas=tuple(hp.betas), weight_decay=0.0)
        return [opt_g, opt_d], [sched]

    # --- validation ----------------------------------------------------------------------------------
    def _val_name(self, dataloader_idx: int) -> str:
        names = getattr(self.trainer.datamodule, "val_names", None) if self.trainer.datamodule else None
        return names[dataloader_idx] if names and dataloader_idx < len(names) else f"set{dataloader_idx}"

    def _reset(self) -> None:
        self._val_counts = None
        self._loss_sum = torch.zeros(2)  # (sum of batch losses * sizes, number of items) over all sets

    def validation_step(self, batch: torch.Tensor, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, batch_idx, dataloader_idx, "val")

    def test_step(self, batch: torch.Tensor, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, batch_idx, dataloader_idx, "test")

    on_validation_epoch_start = on_test_epoch_start = _reset

    def _evaluate(self, batch: torch.Tensor, batch_idx: int, dataloader_idx: int, stage: str) -> None:
        name = self._val_name(dataloader_idx)
        out: TokenizerOutput = self.tokenizer.loss(batch, step=self.batches_seen)
        recon = self.tokenizer.reconstruction_metrics(batch, out.reconstruction)
        metrics = {f"{stage}/{name}/{k}": v for k, v in ({"loss": out.loss} | out.metrics | recon).items()
                   if k not in ("batch_usage", "perplexity")}  # usage over all sets: _log_usage
        self.log_dict(metrics, batch_size=len(batch), add_dataloader_idx=False, sync_dist=True)
        n = out.loss.new_tensor(float(len(batch)))
        self._loss_sum = self._loss_sum.to(n.device) + torch.stack([out.loss.detach().float() * n, n])
        if out.counts is not None:
            counts = out.counts.detach().float()
            self._val_counts = counts if self._val_counts is None else self._val_counts + counts
        if batch_idx == 0 and stage == "val" and not self.trainer.sanity_checking:
            self._write_samples(batch, out.reconstruction, name)

    def on_validation_epoch_end(self) -> None:
        self._log_usage("val")

    def on_test_epoch_end(self) -> None:
        self._log_usage("test")

    def _log_usage(self, stage: str) -> None:
        """The loss over all validation sets, and codebook usage/perplexity over the whole of them."""
        total = self.trainer.strategy.reduce(self._loss_sum.to(self.device), reduce_op="sum")
        logs = {f"{stage}/loss": total[0] / total[1].clamp(min=1)}
        if self._val_counts is not None:
            counts = self.trainer.strategy.reduce(self._val_counts, reduce_op="sum")
            usage, perplexity = usage_and_perplexity(counts)
            logs |= {f"{stage}/codebook_usage": usage, f"{stage}/perplexity": perplexity}
        self.log_dict(logs, rank_zero_only=True)
        self._reset()

    @rank_zero_only
    def _write_samples(self, batch: torch.Tensor, reconstruction: torch.Tensor | None, name: str) -> None:
        """Inputs beside their reconstructions: a file under the log dir and, with TensorBoard, an image."""
        if reconstruction is None or self.hparams.num_samples < 1 or self.trainer.log_dir is None:
            return
        n = self.hparams.num_samples
        lo, hi = getattr(self.tokenizer, "sample_range", (0.0, 1.0))  # images [0, 1], audio [-1, 1]
        pairs = torch.cat([batch[:n], reconstruction[:n].detach().clamp(lo, hi)], dim=-1).float().cpu()
        suffix = getattr(self.tokenizer, "sample_suffix", ".png")  # the file type write_media writes
        path = Path(self.trainer.log_dir) / "samples" / f"{name}_step{self.batches_seen:07d}{suffix}"
        with atomic_path(path) as tmp:
            self.tokenizer.write_media(pairs, tmp)
        experiment = getattr(self.logger, "experiment", None)
        if hasattr(experiment, "add_images") and pairs.dim() == 4:
            experiment.add_images(f"samples/{name}", pairs, self.batches_seen)

    # --- export --------------------------------------------------------------------------------------
    def export(self, directory: str | Path) -> Path:
        """Write the tokenizer with ``save_pretrained`` (what ``anytoken encode/decode`` load)."""
        self.tokenizer.save_pretrained(directory)
        return Path(directory)


class ExportTokenizer(ExportRelease):
    """At the end of ``fit``, write the tokenizer with ``save_pretrained`` (config JSON + safetensors).

    Args:
        dirpath: the directory (replaced atomically) that ``anytoken encode --tokenizer`` reads.
    """

    module_type = TokenizerTrainingModule
    written = "tokenizer"
