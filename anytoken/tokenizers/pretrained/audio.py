"""EnCodec, DAC and Mimi as anytoken audio tokenizers (``AudioCodes``), over transformers' ``EncodecModel``,
``DacModel`` and ``MimiModel``.

Each reads waves at the model's ``sampling_rate`` and channels (other rates and channel counts are converted
by ``audio_io``'s policy), pads them to whole frames and emits codes ``[B, K, ceil(T / hop)]`` of its first
``K = num_codebooks`` residual levels; ``decode`` gives ``[B, C, T' * hop]``. ``num_codebooks`` picks the
bitrate: EnCodec allows the level counts of its ``target_bandwidths``; DAC and Mimi any count up to their
``n_codebooks``/``num_quantizers`` (Mimi at least its semantic levels). None: the library's default
(EnCodec: its lowest bandwidth; DAC and Mimi: all levels).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from anytoken.tokenizers.audio_codes import AudioCodes
from anytoken.tokenizers.base import Tokenizer, register_tokenizer
from anytoken.tokenizers.pretrained.hub import HubModel, register_hub_model, transformers


class HubAudioCodec(AudioCodes, HubModel, Tokenizer):
    """A transformers neural codec as an ``AudioCodes`` tokenizer. Subclasses implement ``levels``,
    ``default_codebooks``, ``_encode`` and ``_decode`` (the calls into the library's model).

    Args:
        hub_config: the model's config (``config.json``) as JSON values.
        num_codebooks: residual levels in the token stream (one of ``levels()``; None: the default).
        model: an already loaded model (``from_hub_directory``).
    """

    modality = "audio"

    def __init__(self, hub_config: dict[str, Any], num_codebooks: int | None = None,
                 model: Any = None) -> None:
        super().__init__(hub_config, model)
        config = self.model.config
        self.sample_rate = int(config.sampling_rate)
        self.channels = int(getattr(config, "audio_channels", 1))
        self.hop_length = self.frame_hop(config)
        self.cardinality = int(config.codebook_size)
        self.with_codebooks(num_codebooks)

    @staticmethod
    def frame_hop(config: Any) -> int:
        """Samples per frame of the model's config."""
        return int(config.hop_length)

    def levels(self) -> tuple[int, ...]:
        """The numbers of levels ``encode`` can emit."""
        raise NotImplementedError

    def default_codebooks(self) -> int:
        """The levels the library's ``encode`` emits by default."""
        return max(self.levels())

    def with_codebooks(self, num_codebooks: int | None) -> HubAudioCodec:
        """Emit the first ``num_codebooks`` levels (None: ``default_codebooks()``); returns self."""
        n = self.default_codebooks() if num_codebooks is None else num_codebooks
        if n not in self.levels():
            raise ValueError(f"{self.name}: num_codebooks must be one of {list(self.levels())}, got {n}")
        self.num_codebooks = n
        return self

    def config(self) -> dict[str, Any]:
        return {"hub_config": self.hub_config, "num_codebooks": self.num_codebooks}

    @torch.no_grad()
    def encode(self, wave: torch.Tensor, sample_rate: int | None = None) -> torch.Tensor:
        """Waves (see ``prepare``) -> codes ``[B, K, ceil(T / hop)]`` long in ``[0, cardinality)``."""
        x = self.prepare(wave, sample_rate).to(self._device)
        frames = math.ceil(x.shape[-1] / self.hop_length)
        x = F.pad(x, (0, frames * self.hop_length - x.shape[-1]))  # (B, C, T' * hop)
        return self._encode(x).long()  # (B, K, T')

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, K, T']`` or ``[K, T']``, or flat local ids ``[T' * K]`` -> waves ``[B, C, T' hop]``."""
        codes = self.check_codes(codes).to(self._device)
        return self._decode(codes).float().reshape(codes.shape[0], self.channels, -1)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        """Whole frames ``[B, C, T' * hop]`` -> codes ``[B, K, T']``."""
        raise NotImplementedError

    def _decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, K, T']`` -> waves ``[B, C, T' * hop]``."""
        raise NotImplementedError


@register_tokenizer
@register_hub_model
class EncodecTokenizer(HubAudioCodec):
    """EnCodec (Défossez et al. 2022) through ``transformers.EncodecModel``: ``facebook/encodec_24khz``
    (75 Hz, 1024 codes a level, 1.5/3/6/12/24 kbps). Models that normalise loudness per chunk
    (``facebook/encodec_48khz``) are refused: that scale is side information outside the token stream."""

    name = "encodec"
    model_type = "encodec"

    def __init__(self, hub_config: dict[str, Any], num_codebooks: int | None = None,
                 model: Any = None) -> None:
        super().__init__(hub_config, num_codebooks, model)
        if self.model.config.normalize or self.model.config.chunk_length_s is not None:
            raise ValueError("encodec: models that code chunks with a loudness scale (normalize=True or "
                             "chunk_length_s set, e.g. encodec_48khz) carry side information outside the "
                             "tokens; use a model without them (encodec_24khz)")

    @classmethod
    def hub_classes(cls) -> tuple[type, type]:
        return transformers().EncodecConfig, transformers().EncodecModel

    def bandwidths(self) -> dict[int, float]:
        """Levels -> the target bandwidth (kbps) the library codes them at."""
        rvq = self.model.quantizer
        return {rvq.get_num_quantizers_for_bandwidth(b): b for b in self.model.config.target_bandwidths}

    def levels(self) -> tuple[int, ...]:
        return tuple(self.bandwidths())

    def default_codebooks(self) -> int:
        return self.model.quantizer.get_num_quantizers_for_bandwidth(self.model.config.target_bandwidths[0])

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model.encode(x, bandwidth=self.bandwidths()[self.num_codebooks], return_dict=True)
        return out.audio_codes[0]  # one chunk: (B, K, T')

    def _decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.model.decode(codes[None], [None], return_dict=True).audio_values


@register_tokenizer
@register_hub_model
class DacTokenizer(HubAudioCodec):
    """The Descript Audio Codec (Kumar et al. 2023) through ``transformers.DacModel``: ``descript/dac_16khz``,
    ``dac_24khz``, ``dac_44khz`` (quantizer dropout during its training: any prefix of levels decodes)."""

    name = "dac"
    model_type = "dac"

    @classmethod
    def hub_classes(cls) -> tuple[type, type]:
        return transformers().DacConfig, transformers().DacModel

    def levels(self) -> tuple[int, ...]:
        return tuple(range(1, self.model.config.n_codebooks + 1))

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode(x, n_quantizers=self.num_codebooks, return_dict=True).audio_codes

    def _decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.model.decode(audio_codes=codes, return_dict=True).audio_values  # (B, T)


@register_tokenizer
@register_hub_model
class MimiTokenizer(HubAudioCodec):
    """Mimi (Défossez et al. 2024, Moshi's codec) through ``transformers.MimiModel``: ``kyutai/mimi`` (24 kHz,
    12.5 Hz, 2048 codes a level; level 0 is distilled from WavLM, the semantic level; Moshi uses 8 levels)."""

    name = "mimi"
    model_type = "mimi"

    @staticmethod
    def frame_hop(config: Any) -> int:
        return int(config.frame_size)

    @classmethod
    def hub_classes(cls) -> tuple[type, type]:
        return transformers().MimiConfig, transformers().MimiModel

    def levels(self) -> tuple[int, ...]:
        c = self.model.config
        return tuple(range(c.num_semantic_quantizers, c.num_quantizers + 1))

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode(x, num_quantizers=self.num_codebooks).audio_codes

    def _decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.model.decode(codes).audio_values
