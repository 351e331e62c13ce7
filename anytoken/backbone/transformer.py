"""The causal backbone: a decoder-only transformer (RoPE, RMSNorm, SwiGLU, SDPA, pre-allocated KV cache).

nanoGPT/litgpt style: the whole model in one file. Pure PyTorch, no Lightning. Returns final hidden
states; the heads in ``anytoken.heads`` turn them into logits.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from anytoken.backbone.config import TransformerConfig


class KVCache:
    """Pre-allocated keys/values for every layer, filled left to right; all rows advance together.

    Args:
        config: the model's config (layer and head counts).
        batch_size: rows generated at once (beams included).
        max_len: the most positions the cache holds.
    """

    def __init__(
        self, config: TransformerConfig, batch_size: int, max_len: int,
        device: torch.device, dtype: torch.dtype,
    ) -> None:
        shape = (config.n_layer, batch_size, config.n_kv_head, max_len, config.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)  # (L, B, nkv, S, hs)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0  # positions filled so far (advanced by the model after its last layer)
        self.max_len = max_len

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write ``k, v`` ``[B, nkv, T, hs]`` after the filled part; return all filled keys/values."""
        end = self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache overflow: {end} positions needed, cache holds {self.max_len}")
        self.k[layer, :, :, self.length : end] = k
        self.v[layer, :, :, self.length : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def reorder(self, index: torch.Tensor) -> None:
        """Select rows (beam search keeps the caches of the surviving beams)."""
        self.k = self.k.index_select(1, index)
        self.v = self.v.index_select(1, index)


def rope_tables(
    config: TransformerConfig, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos, sin`` ``[max_seq_len, head_dim / 2]`` for rotary position embeddings."""
    half = config.head_dim // 2
    inv_freq = 1.0 / config.rope_base ** (torch.arange(half, device=device, dtype=torch.float32) / half)
    angles = torch.outer(torch.arange(config.max_seq_len, device=device, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs ``(i, i + hs/2)`` of ``x`` ``[B, nh, T, hs]`` by angles ``[B, 1, T, hs/2]``."""
    x1, x2 = x.float().chunk(2, dim=-1)  # (B, nh, T, hs/2) each
    out = torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return out.type_as(x)


class Attention(nn.Module):
    def __init__(self, config: TransformerConfig, layer: int) -> None:
        super().__init__()
        self.config, self.layer = config, layer
        hs, nh, nkv = config.head_dim, config.n_head, config.n_kv_head
        self.qkv = nn.Linear(config.d_model, (nh + 2 * nkv) * hs, bias=False)
        self.proj = nn.Linear(nh * hs, config.d_model, bias=False)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, attn_mask: torch.Tensor | None,
        kv_cache: KVCache | None,
    ) -> torch.Tensor:
        B, T, _ = x.shape
        c = self.config
        heads = self.qkv(x).view(B, T, c.n_head + 2 * c.n_kv_head, c.head_dim).transpose(1, 2)
        q, k, v = heads.split([c.n_head, c.n_kv_head, c.n_kv_head], dim=1)  # (B, nh | nkv | nkv, T, hs)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer, k, v)  # (B, nkv, S, hs), S = filled length
        S = k.shape[2]
        is_causal = attn_mask is None and T > 1
        if is_causal and S != T:  # a chunk after a filled cache: causal with an offset
            attn_mask = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(S - T)
            is_causal = False
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=c.dropout if self.training else 0.0, is_causal=is_causal,
            enable_gqa=c.n_kv_head != c.n_head,
        )  # (B, nh, T, hs)
        return self.proj(y.transpose(1, 2).reshape(B, T, c.n_head * c.head_dim))  # (B, T, d)


class SwiGLU(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.gate_up = nn.Linear(config.d_model, 2 * config.mlp_hidden, bias=False)
        self.down = nn.Linear(config.mlp_hidden, config.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)  # (B, T, hidden) each
        return self.down(F.silu(gate) * up)  # (B, T, d)


class Block(nn.Module):
    def __init__(self, config: TransformerConfig, layer: int) -> None:
        super().__init__()
        self.norm_attn = nn.RMSNorm(config.d_model, eps=config.norm_eps)
        self.attn = Attention(config, layer)
        self.norm_mlp = nn.RMSNorm(config.d_model, eps=config.norm_eps)
        self.mlp = SwiGLU(config)
        self.drop = nn.Dropout(config.dropout)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, attn_mask: torch.Tensor | None,
        kv_cache: KVCache | None,
    ) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm_attn(x), cos, sin, attn_mask, kv_cache))
        return x + self.drop(self.mlp(self.norm_mlp(x)))


class CausalTransformer(nn.Module):
    """Decoder-only transformer over global token ids, optionally with continuous input embeddings.

    Args:
        config: hyperparameters; ``vocab_size`` must be set (the task fills it from the TokenSpace).
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        if config.vocab_size <= 0:
            raise ValueError("TransformerConfig.vocab_size must be set (the TokenSpace's vocab_size)")
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.norm = nn.RMSNorm(config.d_model, eps=config.norm_eps)
        cos, sin = rope_tables(config)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2 * n_layer)."""
        for name, p in self.named_parameters():
            if p.dim() == 2:
                residual = name.endswith(("proj.weight", "down.weight"))
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * self.config.n_layer) if residual else 0.02)

    def forward(
        self, input_ids: torch.Tensor | None = None, *, inputs_embeds: torch.Tensor | None = None,
        positions: torch.Tensor | None = None, attn_mask: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Hidden states ``[B, T, d]``.

        Args:
            input_ids: ``[B, T]`` global ids; or give ``inputs_embeds`` ``[B, T, d]`` (ids already embedded
                and continuous features spliced in, see ``embed``) instead.
            positions: ``[B, T]`` RoPE positions; default ``kv_cache.length + arange(T)``.
            attn_mask: bool ``[B, 1, T, S]`` (True = attend) over all ``S`` keys incl. cached ones;
                ``None`` = causal.
            kv_cache: from ``init_kv_cache``; filled in place and advanced by ``T``.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids and inputs_embeds")
        x = self.embed_ids(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, d)
        B, T, _ = x.shape
        start = kv_cache.length if kv_cache is not None else 0
        if positions is None:
            positions = torch.arange(start, start + T, device=x.device).expand(B, T)
        if int(positions.max()) >= self.config.max_seq_len:
            raise ValueError(f"position {int(positions.max())} exceeds max_seq_len={self.config.max_seq_len}")
        cos = self.rope_cos[positions].unsqueeze(1)  # (B, 1, T, hs/2)
        sin = self.rope_sin[positions].unsqueeze(1)
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, cos, sin, attn_mask, kv_cache)
        if kv_cache is not None:
            kv_cache.length += T
        return self.norm(x)

    def embed_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings ``[B, T, d]``, with a clear error for ids outside the vocabulary."""
        if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= self.config.vocab_size):
            raise ValueError(
                f"token ids must lie in [0, {self.config.vocab_size}), got [{int(input_ids.min())}, "
                f"{int(input_ids.max())}]"
            )
        return self.embed(input_ids)

    def init_kv_cache(self, batch_size: int, max_len: int | None = None) -> KVCache:
        """An empty cache for ``batch_size`` rows and up to ``max_len`` positions (default max_seq_len)."""
        p = self.embed.weight
        return KVCache(self.config, batch_size, max_len or self.config.max_seq_len, p.device, p.dtype)

    def num_parameters(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - self.embed.weight.numel() if non_embedding else n

    def flops_per_token(self, seq_len: int) -> int:
        """Training FLOPs per token (fwd + bwd): 6N plus attention's 12 * L * d * T (PaLM, app. B)."""
        c = self.config
        return 6 * (self.num_parameters() + c.d_model * c.vocab_size) + 12 * c.n_layer * c.d_model * seq_len
