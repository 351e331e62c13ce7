"""``TokenTaskModule``: what every task shares: a TokenSpace, its tokenizers, the backbone, the LM head,
an optional image encoder + projector for continuous image prefixes, the loss, generation and the
optimiser. Tasks subclass it and say how a batch becomes segments (``samples``) and what they measure.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F

from anytoken.backbone import CausalTransformer, TransformerConfig
from anytoken.heads import DecodingConfig, GrammarConstraint, LMHead, generate
from anytoken.heads.fourier import FourierHead
from anytoken.tasks.projector import build_projector
from anytoken.tasks.release import export_release, jsonable, load_release
from anytoken.tokenizers.base import CONFIG_FILE, SegmentGrammar, Tokenizer, tokenizer_from_spec
from anytoken.tokenizers.image_encoder import ImageEncoder, ImageEncoderConfig
from anytoken.tokenizers.sequence import (
    IGNORE_INDEX,
    Embeds,
    Segment,
    SequenceBatch,
    Special,
    Tokens,
    build_sequences,
)
from anytoken.tokenizers.space import TokenSpace


def _as(cls: type, value: Any) -> Any:
    """Accept a config dataclass or its dict form (release files and YAML give dicts)."""
    return cls(**value) if isinstance(value, dict) else value


class WarmupCosine:
    """LR factor: linear warm-up over ``min(warmup_steps, total / 2)`` steps, then cosine decay to 10%.

    A class rather than a closure, so schedulers pickle (spawned DDP workers, checkpoint callbacks).
    """

    def __init__(self, warmup_steps: int, total_steps: int) -> None:
        self.total = max(total_steps, 1)
        self.warmup = min(warmup_steps, self.total // 2)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min((step - self.warmup) / max(self.total - self.warmup, 1), 1.0)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_cosine(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR`` with the ``WarmupCosine`` factor."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(warmup_steps, total_steps))


def load_tokenizer(spec: dict[str, Any]) -> Tokenizer:
    """A tokenizer from its spec. A spec may add ``"path"``, a ``save_pretrained`` directory: when it exists
    the weights come from there (and must match the spec's config); otherwise the tokenizer starts from
    its config alone and a checkpoint or release fills in the weights it carries."""
    path = spec.get("path")
    if not path or not (Path(path) / CONFIG_FILE).is_file():
        return tokenizer_from_spec(spec)
    tokenizer = Tokenizer.from_pretrained(path)
    saved = json.dumps(jsonable(tokenizer.spec()), sort_keys=True)
    if saved != json.dumps(jsonable({k: spec.get(k) for k in ("tokenizer", "config")}), sort_keys=True):
        raise ValueError(f"the tokenizer saved in {path} differs from the spec this model was built with")
    return tokenizer


def as_model(source: str | Path | TokenTaskModule) -> TokenTaskModule:
    """``source`` itself, or the model of a release directory or ``.ckpt`` file (a model to start from).

    Raises:
        FileNotFoundError: when there is nothing at ``source``, with a hint to train that model first.
    """
    if isinstance(source, TokenTaskModule):
        return source
    from anytoken.cli import load_model  # the CLI imports the tasks

    try:
        return load_model(source)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"no model to start from ({error}): train it first (e.g. ./quickstart.sh "
                                "writes the captioner release runs/caption_scenes/release)") from error


class TokenTaskModule(L.LightningModule):
    """Base LightningModule of every anytoken task.

    Args:
        vocab: ``{"token_space": TokenSpace.to_dict(), "tokenizers": {modality: Tokenizer.spec()}}``;
            the CLI links it from the DataModule's ``vocab``.
        backbone: transformer hyperparameters (``vocab_size`` is taken from the TokenSpace); default
            the ``small`` preset.
        image_encoder: encoder for continuous image prefixes; None when the task has no image input.
        projector: ``"linear"`` or ``"mlp"`` map from encoder features to the backbone width.
        image_positions: add a learned embedding per image token after the projector (``TokenPositions``),
            so the decoder can read which grid cell an attended token came from (CNN encoders).
        mask: ``"causal"``, or ``"prefix"`` (media prefixes attend to themselves bidirectionally).
        loss_weights: modality -> weight of its target tokens in the loss.
        lr: peak AdamW learning rate (linear warm-up, cosine decay to 10%).
        weight_decay: AdamW weight decay on matrices (not on norms or biases).
        warmup_steps: linear warm-up steps.
        decoding: how validation/test/predict generate.
        input_dropout: while training, the fraction of target-segment *input* tokens replaced by
            ``<pad>`` (word dropout): the model must read the media rather than lean on the text so far,
            which helps it describe attribute combinations it never saw.
        compile: run the backbone's teacher-forced passes (training and validation losses) through
            ``torch.compile`` with dynamic shapes (packed rows change length every step); generation with
            the KV cache stays eager. The weights and checkpoints are the same either way.
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
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        for key, value in self.hparams.items():  # plain data, so checkpoints load with weights_only=True
            self.hparams[key] = jsonable(value)
        if not isinstance(vocab, dict) or {"token_space", "tokenizers"} - set(vocab):
            raise ValueError(
                "vocab must be a dict with 'token_space' and 'tokenizers' (see the DataModule's vocab)"
            )
        self.space = TokenSpace.from_dict(vocab["token_space"])
        self.tokenizers: dict[str, Tokenizer] = {m: load_tokenizer(s) for m, s in vocab["tokenizers"].items()}
        # trainable tokenizers (image VQ, audio codec) are frozen parts of the model: their weights travel in
        # its checkpoints and releases, so a release encodes and decodes media on its own
        self.media_tokenizers = nn.ModuleDict(
            {m: t for m, t in self.tokenizers.items() if isinstance(t, nn.Module)}
        ).requires_grad_(False)
        config = _as(TransformerConfig, backbone) or TransformerConfig.from_name("small")
        self.backbone = CausalTransformer(replace(config, vocab_size=self.space.vocab_size))
        self.lm_head = LMHead(self.backbone)
        self.image_encoder: ImageEncoder | None = None
        if image_encoder is not None:
            self.image_encoder = ImageEncoder(_as(ImageEncoderConfig, image_encoder))
            self.projector = build_projector(projector, self.image_encoder.feature_dim, config.d_model,
                                             self.image_encoder.num_tokens, image_positions)
        self.mask = mask
        self.loss_weights = loss_weights or {}
        self.decoding = _as(DecodingConfig, decoding) or DecodingConfig()
        if not 0.0 <= input_dropout < 1.0:
            raise ValueError(f"input_dropout must be in [0, 1), got {input_dropout}")
        self.input_dropout = input_dropout
        self.compile_backbone = compile  # not `self.compile`: that would hide nn.Module.compile()
        self._compiled_backbone: Callable[..., torch.Tensor] | None = None
        self.task_datamodule: L.LightningDataModule | None = None  # set by a mixture: this task's own

    # --- what tasks define ---------------------------------------------------------------------------
    def samples(self, batch: dict[str, Any], targets: bool) -> list[list[Segment]]:
        """Segments per sample; with ``targets=False`` the prompt that generation continues."""
        raise NotImplementedError

    # --- forward and loss ----------------------------------------------------------------------------
    @property
    def image_tokens(self) -> int:
        """Placeholder positions one image takes in the stream."""
        if self.image_encoder is None:
            raise ValueError(f"{type(self).__name__} was built without an image_encoder")
        return self.image_encoder.num_tokens

    def image_prompt(self, source: int, task: str) -> list[Segment]:
        """``<bos> <image> [features of image source] </image> <task>``: image-conditioned tasks' prompt."""
        return [Special("<bos>"), Embeds("image", self.image_tokens, source), Special(f"<{task}>")]

    def image_segment(self, batch: dict[str, Any], index: int) -> Segment:
        """Image ``index`` of the batch as a prefix: encoder features, or (a model without an image encoder
        but with an image tokenizer) its VQ token ids."""
        if self.image_encoder is not None:
            return Embeds("image", self.image_tokens, index)
        return Tokens("image", self.media_ids(batch, "image")[index], prefix=True)

    def media_ids(self, batch: dict[str, Any], modality: str, key: str = "images") -> torch.Tensor:
        """Local ids ``[B, N]`` of ``batch[key]`` from the ``modality`` tokenizer, flattened per sample and
        cached in the batch as ``f"{modality}_tokens"`` (a DataModule may supply them pre-computed)."""
        if f"{modality}_tokens" not in batch:
            if modality not in self.media_tokenizers:
                raise ValueError(f"{type(self).__name__} has no trainable {modality} tokenizer for {key!r}")
            ids = self.media_tokenizers[modality].encode(batch[key].to(self.device))
            batch[f"{modality}_tokens"] = ids.flatten(1).cpu()
        return batch[f"{modality}_tokens"]

    def setup(self, stage: str) -> None:
        """Take trained media tokenizer weights (e.g. the speech codec that made the training tokens) from
        the DataModule."""
        if self.datamodule is not None:
            self.adopt_media_tokenizers([self.datamodule])

    @property
    def datamodule(self) -> L.LightningDataModule | None:
        """This task's DataModule: inside a mixture its own entry's, else the trainer's."""
        if self.task_datamodule is not None:
            return self.task_datamodule
        return self.trainer.datamodule if self._trainer is not None else None

    def adopt_media_tokenizers(self, datamodules: list[Any]) -> None:
        """Copy into ``media_tokenizers`` the weights of every trainable tokenizer the ``datamodules`` hold
        as an attribute whose type and config match one of this model's."""
        for dm in datamodules:
            for value in vars(dm).values():
                if not (isinstance(value, Tokenizer) and isinstance(value, nn.Module)):
                    continue
                for mine in self.media_tokenizers.values():
                    if type(mine) is type(value) and mine.config() == value.config():
                        mine.load_state_dict(value.state_dict())

    def train(self, mode: bool = True) -> TokenTaskModule:
        super().train(mode)
        self.media_tokenizers.eval()  # frozen: never update codebook statistics or use dropout
        return self

    def unconditional(self, batch: dict[str, Any]) -> dict[str, Any] | None:
        """The batch with its condition dropped, whose prompts classifier-free guidance contrasts with the
        conditional ones; None: the task has no unconditional form."""
        return None

    def embed(self, seq: SequenceBatch, media: dict[str, torch.Tensor]) -> torch.Tensor:
        """Token embeddings ``[B, T, d]`` with projected image features spliced into placeholder positions."""
        x = self.backbone.embed_ids(self.dropped_inputs(seq))  # (B, T, d)
        if seq.embed_sources.numel():
            feats = self.projector(self.image_encoder(media["images"]))  # (N_img, n, d)
            feats = feats[seq.embed_sources].reshape(-1, x.shape[-1]).to(x.dtype)  # (S * n, d)
            x = x.masked_scatter(seq.embed_mask[..., None], feats)
        return x

    def use_head(self, head: str, modality: str, **fourier: Any) -> None:
        """``"lm"`` keeps the LM head; ``"fourier"`` replaces it with a ``FourierHead`` over ``modality``'s
        bins (its tokenizer's ``bin_intervals``; ``fourier``: ``num_frequencies``, ``gamma``)."""
        if head == "fourier":
            self.lm_head = FourierHead.for_modality(
                self.lm_head,
                self.backbone.config.d_model,
                self.space,
                modality,
                self.tokenizers[modality].bin_intervals,
                **fourier,
            )
        elif head != "lm":
            raise ValueError(f"head must be 'lm' or 'fourier', got {head!r}")

    def dropped_inputs(self, seq: SequenceBatch) -> torch.Tensor:
        """``seq.input_ids`` with ``input_dropout`` of the target-segment inputs replaced by ``<pad>`` while
        training (the input at ``t + 1`` is the target at ``t``); unchanged otherwise."""
        if not (self.training and self.input_dropout > 0):
            return seq.input_ids
        fed = F.pad(seq.targets[:, :-1] != IGNORE_INDEX, (1, 0))  # (B, T): input was a target before
        drop = fed & (torch.rand(fed.shape, device=fed.device) < self.input_dropout)
        return seq.input_ids.masked_fill(drop, self.space.pad_id)  # (B, T)

    def sequences(self, batch: dict[str, Any], targets: bool = True, **kwargs: Any) -> SequenceBatch:
        samples = self.samples(batch, targets)
        return build_sequences(
            samples,
            self.space,
            max_length=self.backbone.config.max_seq_len,
            mask=self.mask,
            loss_weights=self.loss_weights,
            **kwargs,
        ).to(self.device)

    def configure_model(self) -> None:
        """Compile the teacher-forced backbone pass when ``compile`` is set (once; a plain attribute, so the
        state dict keeps the eager module's keys)."""
        if self.compile_backbone and self._compiled_backbone is None:
            self._compiled_backbone = torch.compile(self.backbone.forward, dynamic=True)

    def backbone_pass(self, **inputs: Any) -> torch.Tensor:
        """The backbone over whole sequences (no KV cache), compiled when ``compile`` is set."""
        return (self._compiled_backbone or self.backbone)(**inputs)

    def hidden_states(self, seq: SequenceBatch, media: dict[str, torch.Tensor]) -> torch.Tensor:
        """Backbone output ``[B, T, d]`` for a built batch (image features spliced in)."""
        return self.backbone_pass(
            inputs_embeds=self.embed(seq, media), positions=seq.positions, attn_mask=seq.attention_mask()
        )  # (B, T, d)

    def loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """Weighted next-token cross-entropy over target positions."""
        seq = self.sequences(batch)
        return self.lm_loss(seq, self.hidden_states(seq, batch))

    def lm_loss(self, seq: SequenceBatch, hidden: torch.Tensor) -> torch.Tensor:
        """Weighted next-token cross-entropy of ``seq``'s targets given the hidden states ``[B, T, d]``."""
        keep = seq.targets != IGNORE_INDEX  # only target positions go through the head
        logits = self.lm_head(hidden[keep]).float()  # (N, V)
        ce = F.cross_entropy(logits, seq.targets[keep], reduction="none")
        w = seq.loss_weights[keep]
        loss = (ce * w).sum() / w.sum().clamp(min=1e-8)
        penalty = getattr(self.lm_head, "penalty", None)  # a head may regularise its output (FourierHead)
        return loss if penalty is None else loss + penalty(hidden[keep])

    def num_samples(self, batch: dict[str, Any]) -> int | None:
        """Samples in ``batch``, for logging (None: Lightning infers it); tasks without images override it."""
        return len(batch["images"]) if "images" in batch else None

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=self.num_samples(batch))
        return loss

    # --- generation ----------------------------------------------------------------------------------
    @torch.no_grad()
    def generate_segment(
        self,
        batch: dict[str, Any],
        modality: str,
        decoding: DecodingConfig | None = None,
        grammar: SegmentGrammar | None = None,
    ) -> list[torch.Tensor]:
        """Continue each sample's prompt with one well-formed ``modality`` segment; local ids per sample.

        ``grammar`` overrides the tokenizer's ``grammar()`` (e.g. a joint segment of several agents).
        """
        seq = self.sequences(batch, targets=False, padding_side="left")
        grammar = grammar or self.tokenizers[modality].grammar()
        constraint = GrammarConstraint(self.space, modality, grammar)
        decoding = decoding or self.decoding
        uncond: dict[str, Any] = {}
        if decoding.guidance_scale != 1.0:
            uncond_batch = self.unconditional(batch)
            if uncond_batch is None:
                raise ValueError(f"{type(self).__name__} has no unconditional prompts: use guidance_scale 1")
            useq = self.sequences(uncond_batch, targets=False, padding_side="left")
            uncond = {
                "uncond_embeds": self.embed(useq, uncond_batch),
                "uncond_mask": useq.sample_ids > 0,
                "uncond_blocks": useq.prefix_blocks,
            }
        out = generate(
            self.backbone,
            self.lm_head,
            self.embed(seq, batch),
            seq.sample_ids > 0,
            constraint,
            decoding,
            pad_id=self.space.pad_id,
            prompt_blocks=seq.prefix_blocks,
            **uncond,
        )  # (B, N)
        r = self.space.range(modality)
        return [row[(row >= r.start) & (row < r.stop)] - r.start for row in out.cpu()]

    # --- optimisation --------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        params = [p for p in self.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        hp = self.hparams
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=hp.lr,
            betas=(0.9, 0.95),
        )
        sched = warmup_cosine(opt, hp.warmup_steps, int(self.trainer.estimated_stepping_batches))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # --- starting from another model ---------------------------------------------------------------
    def grow_from(self, source: str | Path | TokenTaskModule) -> dict[str, Any]:
        """Start from another model (a module, release directory or ``.ckpt``), e.g. the quickstart
        captioner: its backbone, image encoder, projector and media tokenizers are copied and its token
        ids mapped into this TokenSpace (``anytoken.tasks.vocab_growth.grow_into``, whose report this
        returns); weights only this model has keep their initialisation."""
        from anytoken.tasks.vocab_growth import grow_into

        return grow_into(as_model(source), self)

    def apply_init_from(self, init_from: str | None) -> None:
        """``grow_from(init_from)`` when given (a subclass calls it once its own modules exist), then drop it
        from the hyperparameters: checkpoints and releases carry the grown weights."""
        if init_from:
            self.grow_from(init_from)
            self.hparams["init_from"] = None

    # --- release -------------------------------------------------------------------------------------
    def export(self, directory: str | Path) -> Path:
        """Write a release directory (config JSON + safetensors) that ``from_release`` loads."""
        return export_release(self, dict(self.hparams), directory)

    @classmethod
    def from_release(cls, directory: str | Path) -> TokenTaskModule:
        """Load a release directory written by ``export`` (no Lightning trainer needed)."""
        return load_release(directory, expected=cls)

    def check_token_space(self, other: TokenSpace | dict[str, Any], what: str = "checkpoint") -> None:
        """Fail loudly when ``other`` (e.g. a checkpoint's layout) differs from this model's TokenSpace."""
        other = TokenSpace.from_dict(other) if isinstance(other, dict) else other
        self.space.check_same(other, what)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        cls = type(self)
        checkpoint["anytoken_class"] = f"{cls.__module__}.{cls.__qualname__}"

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        vocab = checkpoint.get("hyper_parameters", {}).get("vocab")
        if vocab is not None:
            self.check_token_space(vocab["token_space"])
