"""The causal backbone: a decoder-only transformer in pure PyTorch."""

from anytoken.backbone.config import PRESETS, TransformerConfig
from anytoken.backbone.transformer import CausalTransformer, KVCache

__all__ = ["PRESETS", "CausalTransformer", "KVCache", "TransformerConfig"]
