"""Continuous image input (the ClipCap/LLaVA route): an image encoder returning patch features [B, N, D],
which the consuming model projects to its width. Sources: ``"cnn"`` (a small built-in conv encoder),
``"timm"`` or ``"open_clip"`` (any model name of that library; imported lazily). Nothing is downloaded:
weights come from ``pretrained_path`` or are random.

The encoder owns its input policy, so data pipelines stay encoder-agnostic: float ``[B, 3, H, W]`` in
``[0, 1]`` is resized to ``image_size`` (bilinear, antialiased), shifted by up to ``augment_shift`` pixels
while training (edge-padded) and normalised with the model's own mean/std (``image_mean_std``). With
``value_channel`` it also sees ``max(R, G, B)`` as a fourth channel, the same map for a shape whatever its
colour (a probe names unseen colour-shape pairs' shapes 0.95 of the time against 0.53-0.62 from RGB alone;
``benchmarks/probe_encoder.py``). ``chroma_width`` splits the image as JPEG and the eye do, into luma and
chroma: the network sees the value map only (structure: it cannot tie a shape to a hue), and a per-pixel
colour path (1x1 convolutions, so it sees no shape), pooled to the network's token grid as a mean weighted by
each pixel's value (so a small object's colour counts as much as a large one's), appends ``chroma_width``
colour features to each token; colour and shape reach the model apart.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import torch
from torch import Tensor, nn

from anytoken.loading import load_state, read_state

Stats = tuple[float, float, float]  # per-channel RGB mean or std

_SOURCES = ("timm", "open_clip", "cnn")
_HALF: Stats = (0.5, 0.5, 0.5)
# open_clip vision_cfg keys the encoder sets itself (patch dropout would change N between train and eval)
_OPEN_CLIP_RESERVED = ("image_size", "patch_dropout", "output_tokens")


@dataclass
class ImageEncoderConfig:
    """Which image encoder to build (validated here: unknown model names raise ``ValueError``)."""

    source: Literal["timm", "open_clip", "cnn"] = "cnn"  # library that builds the encoder
    name: str = ""  # model name in that library (timm/open_clip `list_models()`); "" for "cnn"
    image_size: int = 64  # side of the square input the encoder sees; other sizes are resized to it
    pretrained_path: str | None = None  # local weights (.safetensors, else torch.load); None: random init
    frozen: bool = False  # no gradients and always in eval mode
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # timm create_model / open_clip vision_cfg
    cnn_width: int = 64  # "cnn": channels of the first stage (later stages use 2x); multiple of 8
    cnn_grid: int = 8  # "cnn": side of the output token grid; image_size / cnn_grid must be a power of 2
    augment_shift: int = 0  # train-time random shift up to this many pixels (edge-padded); 0: off
    value_channel: bool = False  # also feed max(R, G, B) as a 4th input channel ("timm" and "cnn")
    chroma_width: int = 0  # > 0: the network sees max(R, G, B) only; a per-pixel colour path adds this many
    mean: Stats | None = None  # normalisation override; None: the model's own (see image_mean_std)
    std: Stats | None = None  # set together with mean

    def __post_init__(self) -> None:
        if self.source not in _SOURCES:
            raise ValueError(f"source must be one of {_SOURCES}, got {self.source!r}")
        if self.image_size < 1:
            raise ValueError(f"image_size must be positive, got {self.image_size}")
        if not 0 <= self.augment_shift < self.image_size:
            raise ValueError(f"augment_shift must be in [0, image_size), got {self.augment_shift}")
        if (self.mean is None) != (self.std is None):
            raise ValueError("set mean and std together, or neither")
        if self.std is not None and (len(self.std) != 3 or len(self.mean) != 3 or min(self.std) <= 0):
            raise ValueError(f"mean/std need 3 values each and std > 0, got {self.mean}, {self.std}")
        if (self.value_channel or self.chroma_width) and self.source == "open_clip":
            raise ValueError("value_channel and chroma_width need source 'timm' or 'cnn' (open_clip towers "
                             "take RGB only)")
        if self.chroma_width < 0 or (self.chroma_width and self.value_channel):
            raise ValueError(f"chroma_width must be >= 0 and excludes value_channel (its network sees the "
                             f"value map alone), got {self.chroma_width} with value_channel="
                             f"{self.value_channel}")
        if self.source == "cnn":
            self._validate_cnn()
        elif not self.name:
            raise ValueError(f"source={self.source!r} needs a model name")
        elif self.source == "timm":
            self._validate_timm()
        else:
            self._validate_open_clip()

    def _validate_cnn(self) -> None:
        if self.name:
            raise ValueError(f"name={self.name!r} is set but source='cnn'; meant 'timm' or 'open_clip'?")
        if self.model_kwargs:
            raise ValueError("model_kwargs are for timm/open_clip; the cnn uses cnn_width and cnn_grid")
        if self.cnn_width < 8 or self.cnn_width % 8:
            raise ValueError(f"cnn_width must be a positive multiple of 8 (GroupNorm), got {self.cnn_width}")
        ratio = self.image_size // self.cnn_grid if self.cnn_grid > 0 else 0
        if ratio < 2 or ratio * self.cnn_grid != self.image_size or ratio & (ratio - 1):
            raise ValueError(
                f"image_size / cnn_grid must be a power of two >= 2 (stride-2 stages), "
                f"got {self.image_size} / {self.cnn_grid}"
            )

    def _validate_timm(self) -> None:
        import timm

        if not timm.is_model(self.name):
            raise ValueError(_unknown_name(self.name, "timm", timm.list_models()))
        for key in ("img_size", "pretrained", "in_chans"):
            if key in self.model_kwargs:
                raise ValueError(
                    f"model_kwargs[{key!r}] is not allowed: use image_size / pretrained_path / value_channel "
                    f"(weights load at the checkpoint's size, then position embeddings adapt to image_size)"
                )

    def _validate_open_clip(self) -> None:
        import open_clip

        if self.name not in open_clip.list_models():
            raise ValueError(_unknown_name(self.name, "open_clip", open_clip.list_models()))
        allowed = {f.name for f in fields(open_clip.CLIPVisionCfg)} - set(_OPEN_CLIP_RESERVED)
        bad = sorted(set(self.model_kwargs) - allowed)
        if bad:
            raise ValueError(
                f"model_kwargs {bad} are not open_clip vision_cfg fields this encoder accepts; "
                f"allowed: {sorted(allowed)} (image_size is set by the config)"
            )


def _unknown_name(name: str, library: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=5)
    return f"model name {name!r} is unknown to {library} (not in {library}.list_models()); close: {close}"


class ConvEncoder(nn.Module):
    """Small conv encoder: images [B, C, S, S] -> tokens [B, grid * grid, dim], row-major.

    Stride-2 stages of conv3x3-GroupNorm(8)-GELU (C -> width -> 2 * width ...) down to the grid, then two
    residual conv3x3 blocks at the grid, where they are cheap and widen the receptive field (47 px for
    64 -> 8); GroupNorm, so train and eval agree. A learned position embedding per cell, then LayerNorm.
    ``width`` is a multiple of 8; ``S / grid`` a power of two >= 2; ``dim`` is 2 * width (width when
    ``S == 2 * grid``). Defaults: 0.53M parameters.
    """

    def __init__(self, image_size: int = 64, width: int = 64, grid: int = 8, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_norm_act(in_channels, width, stride=2)]
        self.dim = width
        for _ in range(1, int(math.log2(image_size // grid))):
            layers.append(_conv_norm_act(self.dim, 2 * width, stride=2))
            self.dim = 2 * width
        layers += [_Residual(_conv_norm_act(self.dim, self.dim, stride=1)) for _ in range(2)]
        self.stages = nn.Sequential(*layers)
        self.pos_embed = nn.Parameter(torch.randn(1, grid * grid, self.dim) * 0.02)
        self.norm = nn.LayerNorm(self.dim)

    def forward(self, images: Tensor) -> Tensor:
        """Encode images [B, C, S, S] into tokens [B, grid * grid, dim]."""
        x = self.stages(images)  # (B, D, grid, grid)
        x = x.flatten(2).transpose(1, 2)  # (B, grid * grid, D)
        return self.norm(x + self.pos_embed)  # (B, grid * grid, D)


def _conv_norm_act(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(8, out_channels),
        nn.GELU(),
    )


class _Residual(nn.Module):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ImageEncoder(nn.Module):
    """Images [B, 3, H, W] (float in [0, 1]) -> features [B, N, D]. Token layout per source:

    - ``"cnn"``: the ``cnn_grid x cnn_grid`` cells, row-major, with a learned position embedding.
    - ``"timm"``: ``forward_features`` without the classifier head (the final norm kept): feature maps
      become H*W tokens, row-major; ViTs drop their prefix (class/register) tokens, as LLaVA does, so N is
      always a spatial grid. Position embeddings are resampled to ``image_size``.
    - ``"open_clip"``: the image tower's last spatial tokens from ``forward_intermediates`` (ViTs: patch
      tokens after ``ln_post``; ResNets: the map before attention pooling); no text tower is built.

    ``pretrained_path`` holds the state dict of ``model`` (the ConvEncoder, timm model or open_clip image
    tower; a full CLIP model's ``visual.*`` keys or timm's classifier keys are fine); any other missing,
    unexpected or mis-shaped key raises ``ValueError`` listing them. ``num_tokens`` is N, ``feature_dim`` D.
    """

    def __init__(self, config: ImageEncoderConfig) -> None:
        super().__init__()
        self.config = config
        state_dict = read_state(config.pretrained_path) if config.pretrained_path else None
        builders = {"cnn": _build_cnn, "timm": _build_timm, "open_clip": _build_open_clip}
        self.model = builders[config.source](config, state_dict)
        width = config.chroma_width
        self.chroma = (nn.Sequential(nn.Conv2d(3, width, 1), nn.GELU(), nn.Conv2d(width, width, 1))
                       if width else None)  # per pixel: colour without shape
        if config.frozen:
            self.requires_grad_(False)
        mean, std = image_mean_std(config)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.num_tokens, self.feature_dim = self._probe()

    def train(self, mode: bool = True) -> ImageEncoder:
        """Set training mode; a frozen encoder stays in eval mode (fixed norm statistics, no dropout)."""
        return super().train(mode and not self.config.frozen)

    def forward(self, images: Tensor) -> Tensor:
        """Float images [B, 3, H, W] in [0, 1] (resized to ``image_size`` if needed) -> [B, N, D]."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images [B, 3, H, W], got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise ValueError(f"expected float images in [0, 1], got {images.dtype}")
        rgb = self._resize_and_shift(images)  # (B, 3, S, S)
        images = (rgb - self.mean) / self.std
        if self.chroma is None and not self.config.value_channel:
            return self._tokens(images)
        lit = rgb.amax(1, keepdim=True)  # (B, 1, S, S): HSV value, the same map for a shape whatever its hue
        value = (lit - self.mean.mean()) / self.std.mean()
        if self.chroma is None:
            return self._tokens(torch.cat([images, value], 1))  # (B, 4, S, S): RGB + value
        tokens = self._tokens(value)  # (B, N, D): structure without hue
        grid = math.isqrt(tokens.shape[1])
        if grid * grid != tokens.shape[1]:
            raise ValueError(f"chroma_width needs a square grid of tokens, got {tokens.shape[1]}")
        pool = nn.functional.adaptive_avg_pool2d  # each pixel weighted by its value: dark ground counts least
        colour = pool(self.chroma(images) * lit, grid) / (pool(lit, grid) + 1e-3)  # (B, C, g, g)
        return torch.cat([tokens, colour.flatten(2).transpose(1, 2)], -1)  # (B, N, D + C)

    def _tokens(self, images: Tensor) -> Tensor:
        """The network's tokens [B, N, D] of normalised images [B, C, S, S]."""
        if self.config.source == "cnn":
            return self.model(images)  # (B, N, D)
        if self.config.source == "timm":
            return _timm_tokens(self.model, self.model.forward_features(images))  # (B, N, D)
        out = self.model.forward_intermediates(
            images, indices=1, normalize_intermediates=True, intermediates_only=True
        )
        return out["image_intermediates"][-1].flatten(2).transpose(1, 2)  # (B, C, H, W) -> (B, H*W, C)

    def _resize_and_shift(self, images: Tensor) -> Tensor:
        """Resize to ``image_size``; while training, shift each image by up to ``augment_shift`` pixels."""
        size, shift = self.config.image_size, self.config.augment_shift
        if images.shape[2:] != (size, size):
            images = nn.functional.interpolate(images, size=(size, size), mode="bilinear", antialias=True)
        if not (self.training and shift > 0):
            return images
        padded = nn.functional.pad(images, (shift,) * 4, mode="replicate")  # (B, 3, S + 2s, S + 2s)
        dy, dx = torch.randint(0, 2 * shift + 1, (2, images.shape[0])).tolist()
        return torch.stack([p[:, y : y + size, x : x + size] for p, y, x in zip(padded, dy, dx)])

    def _probe(self) -> tuple[int, int]:
        """Run one blank image to read N and D (and fail early if the model cannot run at image_size)."""
        was_training = self.training
        self.eval()
        size = self.config.image_size
        try:
            with torch.no_grad():
                tokens = self(torch.zeros(1, 3, size, size, device=self.mean.device))  # (1, N, D)
        except (RuntimeError, AssertionError) as error:
            raise ValueError(
                f"{self.config.source} model {self.config.name!r} cannot run at image_size={size}: {error}"
            ) from error
        finally:
            self.train(was_training)
        return tokens.shape[1], tokens.shape[2]


def _timm_tokens(model: nn.Module, features: Tensor) -> Tensor:
    """timm ``forward_features`` output -> tokens [B, N, D] (see :class:`ImageEncoder`)."""
    if features.ndim == 4:
        if getattr(model, "output_fmt", "NCHW") == "NHWC":
            return features.flatten(1, 2)  # (B, H, W, C) -> (B, H*W, C)
        return features.flatten(2).transpose(1, 2)  # (B, C, H, W) -> (B, H*W, C)
    if features.ndim == 3:
        return features[:, getattr(model, "num_prefix_tokens", 0) :]  # (B, P + N, D) -> (B, N, D)
    raise ValueError(f"cannot turn timm features of shape {tuple(features.shape)} into tokens")


def _in_channels(config: ImageEncoderConfig) -> int:
    """Input channels of the network: the value map alone (``chroma_width``), RGB + value, or RGB."""
    return 1 if config.chroma_width else 4 if config.value_channel else 3


def _build_cnn(config: ImageEncoderConfig, state_dict: dict[str, Tensor] | None) -> nn.Module:
    model = ConvEncoder(
        config.image_size, config.cnn_width, config.cnn_grid, _in_channels(config)
    )
    if state_dict is not None:
        load_state(model, state_dict, config.pretrained_path)
    return model


def _build_timm(config: ImageEncoderConfig, state_dict: dict[str, Tensor] | None) -> nn.Module:
    import timm

    try:
        kwargs = {"in_chans": _in_channels(config), **config.model_kwargs}
        model = timm.create_model(config.name, pretrained=False, **kwargs)
    except TypeError as error:
        message = f"timm model {config.name!r} rejected model_kwargs {config.model_kwargs}: {error}"
        raise ValueError(message) from error
    full_keys = set(model.state_dict())
    _prune_timm_head(model)
    if state_dict is not None:
        if _in_channels(config) != 3:
            state_dict = _adapt_first_conv(state_dict, model, _in_channels(config))
        load_state(model, state_dict, config.pretrained_path, full_keys - set(model.state_dict()))
    if hasattr(model, "set_input_size"):  # after loading, so pretrained position embeddings get resampled
        model.set_input_size(img_size=(config.image_size, config.image_size))
    return model


def _adapt_first_conv(state_dict: dict[str, Tensor], model: nn.Module, channels: int) -> dict[str, Tensor]:
    """An RGB checkpoint for a 4-channel (``value_channel``) or 1-channel (``chroma_width``) network: the
    value channel gets a zero kernel, so the encoder starts out computing exactly what it did on RGB; a value
    map alone gets the sum of the RGB kernels (what the RGB network computed on a gray image)."""
    key = f"{getattr(model, 'pretrained_cfg', {}).get('first_conv', '')}.weight"
    weight = state_dict.get(key)
    if weight is None or weight.ndim != 4 or weight.shape[1] != 3:
        return state_dict
    if channels == 1:
        return {**state_dict, key: weight.sum(1, keepdim=True)}
    return {**state_dict, key: torch.cat([weight, weight.new_zeros(weight[:, :1].shape)], 1)}


def _prune_timm_head(model: nn.Module) -> None:
    """Drop a timm model's classifier and pooling (unused by ``forward_features``), keeping every block."""
    if hasattr(model, "prune_intermediate_layers"):
        model.prune_intermediate_layers(indices=1, prune_norm=False, prune_head=True)
    else:
        model.reset_classifier(0)


def _build_open_clip(config: ImageEncoderConfig, state_dict: dict[str, Tensor] | None) -> nn.Module:
    import open_clip
    from open_clip.model import _build_vision_tower

    model_cfg = open_clip.get_model_config(config.name)
    vision_cfg = {**model_cfg["vision_cfg"], **config.model_kwargs}
    vision_cfg.update(image_size=config.image_size, patch_dropout=0.0, output_tokens=False)
    # The image tower alone: open_clip.create_model would also build a text tower only to discard it
    # (ViT-B-32 on CPU: 2.1 s vs 0.8 s). Its timm trunks are built without pretrained weights.
    quick_gelu = model_cfg.get("quick_gelu", False)
    visual = _build_vision_tower(model_cfg["embed_dim"], open_clip.CLIPVisionCfg(**vision_cfg), quick_gelu)
    full_keys = set(visual.state_dict())
    if hasattr(visual, "trunk"):  # open_clip.timm_model.TimmModel: a timm trunk plus a projection head
        visual.head = nn.Identity()
        _prune_timm_head(visual.trunk)
    elif hasattr(visual, "attnpool"):  # ModifiedResNet: attention pooling only serves the pooled output
        visual.attnpool = nn.Identity()
    else:  # VisionTransformer: drop the pooled projection, keep ln_post for the tokens
        visual.prune_intermediate_layers(indices=1, prune_norm=False, prune_head=True)
    if state_dict is not None:
        state_dict = _open_clip_visual_state(state_dict, visual)
        load_state(visual, state_dict, config.pretrained_path, full_keys - set(visual.state_dict()))
    if hasattr(visual, "set_input_size"):  # timm trunks are built at their default size, as create_model does
        visual.set_input_size(config.image_size)
    return visual


def _open_clip_visual_state(state_dict: dict[str, Tensor], visual: nn.Module) -> dict[str, Tensor]:
    """Keep a full CLIP checkpoint's ``visual.*`` keys; resample a ViT position embedding to the grid."""
    if any(key.startswith("visual.") for key in state_dict):
        state_dict = {k.removeprefix("visual."): v for k, v in state_dict.items() if k.startswith("visual.")}
    pos = state_dict.get("positional_embedding")  # (1 + h*w, width) for ViTs
    own = getattr(visual, "positional_embedding", None)
    if pos is not None and own is not None and pos.shape != own.shape and hasattr(visual, "grid_size"):
        from timm.layers import resample_abs_pos_embed

        grid = list(visual.grid_size)
        state_dict["positional_embedding"] = resample_abs_pos_embed(pos[None], grid, num_prefix_tokens=1)[0]
    return state_dict


def image_mean_std(config: ImageEncoderConfig) -> tuple[Stats, Stats]:
    """Per-channel (mean, std) the encoder expects, without building or downloading anything.

    ``config.mean``/``config.std`` if set; ``"cnn"``: 0.5/0.5; timm: ``timm.data.resolve_data_config`` on
    the model's pretrained config; open_clip: the mean/std its pretrained tags for that name agree on
    (e.g. 0.5 for SigLIP), else open_clip's OpenAI defaults.
    """
    if config.mean is not None and config.std is not None:
        return tuple(config.mean), tuple(config.std)
    if config.source == "cnn":
        return _HALF, _HALF
    if config.source == "timm":
        import timm
        import timm.data

        pretrained_cfg = timm.get_pretrained_cfg(config.name)
        data_cfg = timm.data.resolve_data_config(
            args={"input_size": (3, config.image_size, config.image_size)},
            pretrained_cfg=pretrained_cfg.to_dict() if pretrained_cfg is not None else None,
        )
        return tuple(data_cfg["mean"]), tuple(data_cfg["std"])
    import open_clip

    default = (tuple(open_clip.OPENAI_DATASET_MEAN), tuple(open_clip.OPENAI_DATASET_STD))
    stats = set()
    for tag in open_clip.list_pretrained_tags_by_model(config.name):
        tag_cfg = open_clip.get_pretrained_cfg(config.name, tag)
        stats.add((tuple(tag_cfg.get("mean") or default[0]), tuple(tag_cfg.get("std") or default[1])))
    return stats.pop() if len(stats) == 1 else default
