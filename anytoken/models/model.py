"""``AnytokenModel``: the plain ``nn.Module`` users load and call, without Lightning.

    model = anytoken.load("runs/caption_scenes/release")
    model.caption(images)  # images [B, 3, H, W] in [0, 1]
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_model

from anytoken.atomic import atomic_directory
from anytoken.backbone import CausalTransformer, TransformerConfig
from anytoken.heads import DecodingConfig, GrammarConstraint, LMHead, generate
from anytoken.heads.fourier import FourierHead
from anytoken.loading import LoadError, jsonable, load_weights, read_json
from anytoken.models.formats import TaskFormat, build_format, check_choice, format_spec, open_segment
from anytoken.models.projector import build_projector
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

RELEASE_FORMAT = 2
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"


def _as(cls: type, value: Any) -> Any:
    """Accept a config dataclass or its dict form (release files and YAML give dicts)."""
    return cls(**value) if isinstance(value, dict) else value


def load_tokenizer(spec: dict[str, Any]) -> Tokenizer:
    """A tokenizer from its spec; from the spec's ``"path"`` (a ``save_pretrained`` directory, which must
    match the spec) when it exists, else from its config alone (the model's weights fill in the rest)."""
    path = spec.get("path") if isinstance(spec, dict) else None
    if not path or not (Path(path) / CONFIG_FILE).is_file():
        return tokenizer_from_spec(spec)
    tokenizer = Tokenizer.from_pretrained(path)
    saved = json.dumps(jsonable(tokenizer.spec()), sort_keys=True)
    if saved != json.dumps(jsonable({k: spec.get(k) for k in ("tokenizer", "config")}), sort_keys=True):
        raise ValueError(f"the tokenizer saved in {path} differs from the spec this model was built with")
    return tokenizer


class AnytokenModel(nn.Module):
    """TokenSpace + tokenizers + backbone + heads + image encoder/projector + task formats.

    Args:
        vocab: ``{"token_space": TokenSpace.to_dict(), "tokenizers": {modality: Tokenizer.spec()}, ...}``
            (a DataModule's ``vocab``; extra keys such as ``answers`` are kept for the formats).
        formats: task name -> ``{"kind": ..., **settings}`` (``anytoken.models.formats.FORMATS``).
        backbone: transformer hyperparameters (``vocab_size`` comes from the TokenSpace); default ``small``.
        image_encoder: encoder for continuous image prefixes; None when images enter as tokens or not at all.
        projector: ``"linear"`` or ``"mlp"`` map from encoder features to the backbone width.
        image_positions: add a learned embedding per image token after the projector.
        mask: ``"causal"``, or ``"prefix"`` (media prefixes attend to themselves bidirectionally).
        decoding: how generation chooses tokens unless a call says otherwise.
    """

    def __init__(
        self,
        vocab: dict[str, Any],
        formats: dict[str, dict[str, Any]] | None = None,
        backbone: TransformerConfig | dict[str, Any] | None = None,
        image_encoder: ImageEncoderConfig | dict[str, Any] | None = None,
        projector: Literal["linear", "mlp"] = "mlp",
        image_positions: bool = False,
        mask: Literal["causal", "prefix"] = "prefix",
        decoding: DecodingConfig | dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(vocab, dict) or {"token_space", "tokenizers"} - set(vocab):
            raise ValueError("vocab must be a dict with 'token_space' and 'tokenizers' (a DataModule's)")
        check_choice("mask", mask, ("causal", "prefix"))
        self.vocab = jsonable(vocab)
        self.space = TokenSpace.from_dict(vocab["token_space"])
        self.tokenizers: dict[str, Tokenizer] = {m: load_tokenizer(s) for m, s in vocab["tokenizers"].items()}
        media = {m: t for m, t in self.tokenizers.items() if isinstance(t, nn.Module)}
        self.media_tokenizers = nn.ModuleDict(media).requires_grad_(False)
        config = _as(TransformerConfig, backbone) or TransformerConfig.from_name("small")
        self.backbone = CausalTransformer(replace(config, vocab_size=self.space.vocab_size))
        self.lm_head: nn.Module = LMHead(self.backbone)
        self.image_encoder: ImageEncoder | None = None
        if image_encoder is not None:
            self.image_encoder = ImageEncoder(_as(ImageEncoderConfig, image_encoder))
            self.projector = build_projector(projector, self.image_encoder.feature_dim, config.d_model,
                                             self.image_encoder.num_tokens, image_positions)
        self.projector_kind, self.image_positions, self.mask = projector, image_positions, mask
        self.decoding = _as(DecodingConfig, decoding) or DecodingConfig()
        # training settings, set by the task that trains the model (not part of a release)
        self.loss_weights: dict[str, float] = {}
        self.input_dropout, self.input_noise = 0.0, "pad"
        self._compiled: Callable[..., torch.Tensor] | None = None
        self.formats = nn.ModuleDict({name: build_format(spec) for name, spec in (formats or {}).items()})
        for fmt in self.formats.values():
            fmt.bind(self)

    # --- configuration and files ---------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The constructor arguments as JSON values: ``AnytokenModel(**model.config())`` rebuilds it."""
        encoder = None if self.image_encoder is None else asdict(self.image_encoder.config)
        return jsonable({
            "vocab": self.vocab, "formats": {n: format_spec(f) for n, f in self.formats.items()},
            "backbone": self.backbone.config, "image_encoder": encoder, "projector": self.projector_kind,
            "image_positions": self.image_positions, "mask": self.mask, "decoding": self.decoding,
        })

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write a release directory (``config.json``: format version + ``config()``; weights) atomically."""
        with atomic_directory(directory) as tmp:
            save_model(self, str(tmp / WEIGHTS_NAME))  # handles tied (shared) weights
            config = {"format_version": RELEASE_FORMAT, "model": self.config()}
            (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2))
        return Path(directory)

    @classmethod
    def from_config(cls, config: Any, source: str | Path) -> AnytokenModel:
        """A model from ``config`` (the ``"model"`` entry of a release or checkpoint); ``LoadError`` naming
        ``source`` when the settings are not this model's."""
        if not isinstance(config, dict):
            raise LoadError(f"{source}: the model settings are not a JSON object but {type(config).__name__}")
        try:
            return cls(**config)
        except (TypeError, ValueError, KeyError, RuntimeError) as err:  # RuntimeError: timm's unknown name
            raise LoadError(f"{source}: cannot build the model from its settings ({err})") from None

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> AnytokenModel:
        """Load a release directory written by ``save_pretrained`` (eval mode)."""
        path = Path(directory) / CONFIG_NAME
        if not Path(directory).is_dir():
            raise LoadError(f"{directory}: no release directory there")
        config = read_json(path, "an anytoken release")
        if config.get("format_version") != RELEASE_FORMAT:
            raise LoadError(f"{path}: release format_version {config.get('format_version')!r}; this anytoken "
                            f"reads {RELEASE_FORMAT} (written before the redesign: train it again)")
        model = cls.from_config(config.get("model"), path)
        load_weights(model, Path(directory) / WEIGHTS_NAME)
        return model.eval()

    @property
    def device(self) -> torch.device:
        return self.backbone.embed.weight.device

    def train(self, mode: bool = True) -> AnytokenModel:
        super().train(mode)
        self.media_tokenizers.eval()  # frozen: never update codebook statistics or use dropout
        return self

    def task_format(self, kind: str) -> TaskFormat:
        """The format of kind ``kind`` (or named ``kind``) this model holds."""
        if kind in self.formats:
            return self.formats[kind]
        found = next((f for f in self.formats.values() if f.kind == kind), None)
        if found is None:
            raise ValueError(f"this model was not trained for {kind!r}: its tasks are "
                             f"{ {n: f.kind for n, f in self.formats.items()} }")
        return found

    # --- media in the stream -------------------------------------------------------------------------
    @property
    def image_tokens(self) -> int:
        """Placeholder positions one image takes in the stream."""
        if self.image_encoder is None:
            raise ValueError("this model has no image_encoder")
        return self.image_encoder.num_tokens

    def image_prompt(self, source: int, task: str) -> list[Segment]:
        """``<bos> <image> [features of image source] </image> <task>``: image-conditioned tasks' prompt."""
        return [Special("<bos>"), Embeds("image", self.image_tokens, source), Special(f"<{task}>")]

    def image_segment(self, batch: dict[str, Any], index: int) -> Segment:
        """Image ``index`` of the batch as a prefix: encoder features, or (without an image encoder but with
        an image tokenizer) its VQ token ids."""
        if self.image_encoder is not None:
            return Embeds("image", self.image_tokens, index)
        return Tokens("image", self.media_ids(batch, "image")[index], prefix=True)

    def media_ids(self, batch: dict[str, Any], modality: str, key: str = "images") -> torch.Tensor:
        """Local ids ``[B, N]`` of ``batch[key]`` from the ``modality`` tokenizer, flattened per sample and
        cached in the batch as ``f"{modality}_tokens"`` (a DataModule may supply them pre-computed)."""
        if f"{modality}_tokens" not in batch:
            if modality not in self.media_tokenizers:
                raise ValueError(f"this model has no trainable {modality} tokenizer for {key!r}")
            ids = self.media_tokenizers[modality].encode(batch[key].to(self.device))
            batch[f"{modality}_tokens"] = ids.flatten(1).cpu()
        return batch[f"{modality}_tokens"]

    def use_head(self, head: str, modality: str, **fourier: Any) -> None:
        """``"lm"`` keeps the LM head; ``"fourier"`` replaces it with a ``FourierHead`` over ``modality``'s
        bins (its tokenizer's ``bin_intervals``; ``fourier``: ``num_frequencies``, ``gamma``)."""
        check_choice("head", head, ("lm", "fourier"))
        if head == "fourier":
            bins = self.tokenizers[modality].bin_intervals
            self.lm_head = FourierHead.for_modality(self.lm_head, self.backbone.config.d_model, self.space,
                                                    modality, bins, **fourier)

    # --- rows, embeddings, loss ----------------------------------------------------------------------
    def sequences(self, samples: list[list[Segment]], **kwargs: Any) -> SequenceBatch:
        """Rows of ``samples`` under this model's mask, context length and loss weights, on its device."""
        kwargs = {"mask": self.mask, "loss_weights": self.loss_weights} | kwargs
        max_length = self.backbone.config.max_seq_len
        return build_sequences(samples, self.space, max_length=max_length, **kwargs).to(self.device)

    def dropped_inputs(self, seq: SequenceBatch) -> torch.Tensor:
        """``seq.input_ids`` with ``input_dropout`` of the target-segment inputs noised while training (the
        input at ``t + 1`` is the target at ``t``); unchanged otherwise. ``input_noise`` "pad": replaced by
        ``<pad>`` (word dropout, blank noising); "unigram": by a target token drawn from the whole batch,
        so at the batch's word frequencies (unigram noising: Xie et al. 2017, "Data Noising as Smoothing in
        Neural Network Language Models"): a word no longer tells what follows it, the media must."""
        if not (self.training and self.input_dropout > 0):
            return seq.input_ids
        fed = F.pad(seq.targets[:, :-1] != IGNORE_INDEX, (1, 0))  # (B, T): input was a target before
        drop = fed & (torch.rand(fed.shape, device=fed.device) < self.input_dropout)
        if self.input_noise == "pad":
            return seq.input_ids.masked_fill(drop, self.space.pad_id)  # (B, T)
        pool = seq.input_ids[fed]  # (N,) every fed token of the batch, so drawn by frequency
        draws = pool[torch.randint(len(pool), (int(drop.sum()),), device=pool.device)]
        return seq.input_ids.masked_scatter(drop, draws)  # (B, T)

    def embed(self, seq: SequenceBatch, media: dict[str, Any]) -> torch.Tensor:
        """Token embeddings ``[B, T, d]`` with projected image features spliced into placeholder positions."""
        x = self.backbone.embed_ids(self.dropped_inputs(seq))  # (B, T, d)
        if seq.embed_sources.numel():
            if self.image_encoder is None:
                raise ValueError("these rows hold image placeholders but the model has no image_encoder")
            feats = self.projector(self.image_encoder(media["images"].to(x.device)))  # (N_img, n, d)
            feats = feats[seq.embed_sources].reshape(-1, x.shape[-1]).to(x.dtype)  # (S * n, d)
            x = x.masked_scatter(seq.embed_mask[..., None], feats)
        return x

    def compile_backbone(self) -> None:
        """Run whole-sequence passes through ``torch.compile`` (dynamic shapes: packed rows change length);
        a plain attribute, so the state dict keeps the eager keys. Generation stays eager."""
        if self._compiled is None:
            self._compiled = torch.compile(self.backbone.forward, dynamic=True)

    def hidden_states(self, seq: SequenceBatch, embeds: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Backbone output ``[B, T, d]`` over whole rows (``kwargs`` override positions or mask)."""
        kwargs.setdefault("positions", seq.positions)
        if "attn_mask" not in kwargs:  # built only when not given (a shared-prefix layout brings its own)
            kwargs["attn_mask"] = seq.attention_mask()
        return (self._compiled or self.backbone)(inputs_embeds=embeds, **kwargs)  # (B, T, d)

    def lm_loss(self, seq: SequenceBatch, hidden: torch.Tensor) -> torch.Tensor:
        """Weighted next-token cross-entropy of ``seq``'s targets given the hidden states ``[B, T, d]``."""
        keep = seq.targets != IGNORE_INDEX  # only target positions go through the head
        logits = self.lm_head(hidden[keep]).float()  # (N, V)
        ce = F.cross_entropy(logits, seq.targets[keep], reduction="none")
        w = seq.loss_weights[keep]
        loss = (ce * w).sum() / w.sum().clamp(min=1e-8)
        penalty = getattr(self.lm_head, "penalty", None)  # a head may regularise its output (FourierHead)
        return loss if penalty is None else loss + penalty(hidden[keep])

    # --- generation ----------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, fmt: TaskFormat, batch: dict[str, Any], modality: str,
                 decoding: DecodingConfig | None = None,
                 grammar: SegmentGrammar | None = None) -> list[torch.Tensor]:
        """Local ids per sample: ``fmt``'s prompts for ``batch`` continued with one well-formed ``modality``
        segment (under ``grammar``, default the tokenizer's)."""
        decoding = decoding or fmt.decoding_of(self)
        seq = fmt.rows(self, batch, targets=False)
        uncond: dict[str, Any] = {}
        if decoding.guidance_scale != 1.0:
            uncond_batch = fmt.unconditional(batch)
            if uncond_batch is None:
                raise ValueError(f"the {fmt.kind} format has no unconditional prompts: use guidance_scale 1")
            useq = fmt.rows(self, uncond_batch, targets=False)
            uncond = {"uncond_embeds": fmt.embed(self, useq, uncond_batch),
                      "uncond_mask": useq.sample_ids > 0, "uncond_blocks": useq.prefix_blocks}
        constraint = GrammarConstraint(self.space, modality, grammar or self.tokenizers[modality].grammar())
        out = generate(self.backbone, self.lm_head, fmt.embed(self, seq, batch), seq.sample_ids > 0,
                       constraint, decoding, pad_id=self.space.pad_id, prompt_blocks=seq.prefix_blocks,
                       **uncond)  # (B, N)
        r = self.space.range(modality)
        return [row[(row >= r.start) & (row < r.stop)] - r.start for row in out.cpu()]

    @torch.no_grad()
    def complete(self, prompts: list[list[Segment]], modality: str, images: torch.Tensor | None = None,
                 decoding: DecodingConfig | None = None,
                 grammar: SegmentGrammar | None = None) -> list[torch.Tensor]:
        """Continue hand-built prompts with one ``modality`` segment each; local ids per prompt.

        Args:
            prompts: segments per sample, e.g. ``[Special("<bos>"), Embeds("image", n, 0), Special("<vqa>")]``
                (an open ``modality`` segment is appended when missing).
            images: ``[N, 3, S, S]`` in ``[0, 1]``, indexed by the prompts' ``Embeds`` sources.
            decoding, grammar: default the model's and the tokenizer's (the budget fits a fixed grammar).
        """
        grammar = grammar or self.tokenizers[modality].grammar()
        decoding = decoding or self.decoding
        if grammar.max_length is not None and decoding.max_new_tokens <= grammar.max_length:
            decoding = replace(decoding, max_new_tokens=grammar.max_length + 1)
        batch: dict[str, Any] = {"prompts": [_open(p, modality) for p in prompts]}
        if images is not None:
            batch["images"] = images
        return self.generate(_Prompts(), batch, modality, decoding, grammar)

    # --- task conveniences: each hands over to the format of its task ---------------------------------
    def caption(self, *args: Any, **kwargs: Any) -> list[str]:
        """Captions of images ``[B, 3, H, W]`` in ``[0, 1]`` (``CaptionFormat.caption``)."""
        return self.task_format("caption").caption(self, *args, **kwargs)

    def ask(self, *args: Any, **kwargs: Any) -> list[str]:
        """Answers to questions about images (``VQAFormat.ask``)."""
        return self.task_format("vqa").ask(self, *args, **kwargs)

    def transcribe(self, *args: Any, **kwargs: Any) -> list[str]:
        """Transcripts of waves (``TranscribeFormat.transcribe_waves``)."""
        return self.task_format("transcribe").transcribe_waves(self, *args, **kwargs)

    def speak(self, *args: Any, **kwargs: Any) -> list[torch.Tensor]:
        """Waves saying texts (``SpeakFormat.speak``)."""
        return self.task_format("speak").speak(self, *args, **kwargs)

    def sample_rows(self, *args: Any, **kwargs: Any) -> Any:
        """Synthetic table rows (``TableGenerationFormat.sample_rows``)."""
        return self.task_format("table_generation").sample_rows(self, *args, **kwargs)

    def predict_rows(self, *args: Any, **kwargs: Any) -> Any:
        """The target column of table rows (``TablePredictionFormat.predict``)."""
        return self.task_format("table_prediction").predict(self, *args, **kwargs)

    def predict_pose(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Keypoints of the person in images (``PoseFormat.predict_keypoints``)."""
        return self.task_format("pose_estimation").predict_keypoints(self, *args, **kwargs)

    def forecast(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Future trajectories of observed agents (``ForecastFormat.forecast``)."""
        return self.task_format("forecast").forecast(self, *args, **kwargs)

    def draw(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Images of texts (``TextToImageFormat.draw``)."""
        return self.task_format("text_to_image").draw(self, *args, **kwargs)


def _open(prompt: list[Segment], modality: str) -> list[Segment]:
    """``prompt`` ending in an open ``modality`` segment (appended when it does not already)."""
    last = prompt[-1] if prompt else None
    if isinstance(last, Tokens) and last.modality == modality and not last.close:
        return list(prompt)
    return [*prompt, open_segment(modality)]


class _Prompts(TaskFormat):
    """The format of hand-built prompts (``complete``): ``batch["prompts"]`` as they are."""

    kind = "prompts"

    def samples(self, model: AnytokenModel, batch: dict[str, Any], targets: bool) -> list[list[Segment]]:
        return batch["prompts"]
