"""Backbone configuration: one typed dataclass with named presets (litgpt's ``Config.from_name``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class TransformerConfig:
    """Hyperparameters of the decoder-only transformer."""

    vocab_size: int = 0  # 0 = filled in from the TokenSpace by the task that owns the model
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # query heads
    n_kv_head: int | None = None  # key/value heads (grouped-query attention); None = n_head
    d_model: int = 256  # residual stream width
    mlp_hidden: int | None = None  # SwiGLU hidden width; None = 8/3 * d_model rounded up to 64
    max_seq_len: int = 256  # longest sequence (RoPE table and KV-cache bound)
    rope_base: float = 10_000.0  # RoPE frequency base
    norm_eps: float = 1e-5  # RMSNorm epsilon
    dropout: float = 0.0  # residual and attention dropout while training
    tie_embeddings: bool = True  # share the token embedding with the LM head

    def __post_init__(self) -> None:
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        if self.mlp_hidden is None:
            self.mlp_hidden = -(-8 * self.d_model // 3 // 64) * 64
        checks = {
            "vocab_size >= 0": self.vocab_size >= 0,
            "n_layer >= 1": self.n_layer >= 1,
            "n_head >= 1": self.n_head >= 1,
            "d_model divisible by n_head": self.d_model % self.n_head == 0,
            "even head size (RoPE rotates pairs)": (self.d_model // self.n_head) % 2 == 0,
            "n_head divisible by n_kv_head": self.n_head % self.n_kv_head == 0,
            "max_seq_len >= 1": self.max_seq_len >= 1,
            "0 <= dropout < 1": 0.0 <= self.dropout < 1.0,
        }
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"invalid TransformerConfig ({', '.join(failed)}): {self}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> TransformerConfig:
        """A named preset (``tiny``, ``small``, ``base``, ``large``) with optional field overrides."""
        if name not in PRESETS:
            raise ValueError(f"unknown backbone preset {name!r}; choose from {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(n_layer=2, n_head=2, d_model=64, max_seq_len=128),  # tests: ~0.1M parameters + embeddings
    "small": dict(n_layer=4, n_head=4, d_model=256, max_seq_len=256),  # CPU quickstart: ~3M + embeddings
    "base": dict(n_layer=12, n_head=12, d_model=768, max_seq_len=2048),  # GPU: ~85M + embeddings
    "large": dict(n_layer=24, n_head=16, n_kv_head=8, d_model=1024, max_seq_len=4096),  # GPU: ~280M
}
