"""Multi-codebook audio in the stream: the delay pattern with parallel per-codebook heads (MusicGen).

A codec's ``K`` levels share one position per frame (its input is the sum of its codes' embeddings) and
``CodebookHeads`` predict all ``K`` codes of the next position at once. The delay pattern (Copet et al.,
2023) shifts level ``k`` right by ``k``, so level ``k`` of frame ``t`` is predicted after levels ``< k`` of
frame ``t``: ``T + K - 1`` positions instead of flattening's ``K * T``. Grid cells without a code are
``EMPTY`` (no embedding, no target). Level 0 has one extra class, ``END`` (``= cardinality``), predicted
after its last code; the other levels then finish their delayed codes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from anytoken.backbone import CausalTransformer
from anytoken.heads.decoding import DecodingConfig, _pick, _Stepper

EMPTY = -1  # a delayed-grid cell without a code
IGNORE_INDEX = -100  # targets that take no loss (as in the sequence builder)


def delay_pattern(codes: torch.Tensor) -> torch.Tensor:
    """Codes ``[..., K, T]`` -> delayed grid ``[..., K, T + K - 1]``: level ``k`` shifted right by ``k``."""
    K, T = codes.shape[-2:]
    out = codes.new_full((*codes.shape[:-1], T + K - 1), EMPTY)
    for k in range(K):
        out[..., k, k : k + T] = codes[..., k, :]
    return out


def undo_delay(delayed: torch.Tensor) -> torch.Tensor:
    """Delayed grid ``[..., K, L]`` -> codes ``[..., K, L - K + 1]`` (raises ``ValueError`` on holes)."""
    K, L = delayed.shape[-2:]
    if L < K:
        raise ValueError(f"a delayed grid of {K} levels needs at least {K} positions, got {L}")
    codes = torch.stack([delayed[..., k, k : k + L - K + 1] for k in range(K)], dim=-2)
    if bool((codes < 0).any()):
        raise ValueError("the delayed grid has EMPTY cells inside the frames it encodes")
    return codes


def delay_targets(codes: torch.Tensor, cardinality: int) -> torch.Tensor:
    """What the positions ``<audio>, P_0, ..., P_{L-1}`` of one sample's codes ``[K, T]`` predict:
    ``[L + 1, K]``, ``IGNORE_INDEX`` on empty cells and ``END`` (``= cardinality``) on level 0 at the end."""
    K, T = codes.shape
    grid = F.pad(delay_pattern(codes), (0, 1), value=EMPTY)  # (K, L + 1)
    grid[0, T] = cardinality  # END
    return grid.masked_fill(grid == EMPTY, IGNORE_INDEX).t()  # (L + 1, K)


def frame_embeddings(
    embed: Callable[[torch.Tensor], torch.Tensor], grid: torch.Tensor, offset: int, cardinality: int
) -> torch.Tensor:
    """Sum ``[..., d]`` of the embeddings of each position's codes ``grid`` ``[..., K]`` (``EMPTY`` adds
    nothing); ``embed`` maps global ids ``[N]`` to ``[N, d]``, ``offset`` is the global id of the codec's
    local id 0 (level ``k`` code ``c`` is local ``k * cardinality + c``)."""
    K = grid.shape[-1]
    ids = grid.clamp(min=0) + offset + torch.arange(K, device=grid.device) * cardinality  # (..., K)
    emb = embed(ids.reshape(-1)).view(*ids.shape, -1)  # (..., K, d)
    return (emb * (grid >= 0)[..., None].to(emb.dtype)).sum(-2)


class CodebookHeads(nn.Module):
    """``K`` parallel linear heads, one per codebook level, each over ``cardinality`` codes (+ ``END`` on
    level 0).

    Args:
        d_model: hidden size.
        num_codebooks: levels ``K``.
        cardinality: codes per level ``C``.
    """

    def __init__(self, d_model: int, num_codebooks: int, cardinality: int) -> None:
        super().__init__()
        if num_codebooks < 1 or cardinality < 2:
            raise ValueError(
                f"need num_codebooks >= 1 and cardinality >= 2, got {num_codebooks}, {cardinality}"
            )
        self.num_codebooks, self.cardinality = num_codebooks, cardinality
        self.proj = nn.Linear(d_model, num_codebooks * (cardinality + 1), bias=False)
        nn.init.normal_(self.proj.weight, std=0.02)
        end_allowed = torch.zeros(num_codebooks, cardinality + 1, dtype=torch.bool)
        end_allowed[:, :cardinality], end_allowed[0, cardinality] = True, True
        self.register_buffer("allowed", end_allowed, persistent=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits ``[..., K, C + 1]`` (``-inf`` on ``END`` for levels ``>= 1``) of hidden ``[..., d]``."""
        logits = self.proj(hidden).unflatten(-1, (self.num_codebooks, self.cardinality + 1))
        return logits.masked_fill(~self.allowed, float("-inf"))

    def loss(self, hidden: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy over cells that have a target, and the accuracy per level ``[K]``.

        Args:
            hidden: ``[N, d]`` states of the positions that predict.
            targets: ``[N, K]`` (``IGNORE_INDEX`` where nothing is predicted).
        """
        logits = self(hidden).float()  # (N, K, C + 1)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)
        keep = targets != IGNORE_INDEX
        hits = (logits.argmax(-1) == targets) & keep
        return loss, hits.sum(0).float() / keep.sum(0).clamp(min=1)


@torch.no_grad()
def generate_delayed(
    model: CausalTransformer, heads: CodebookHeads, inputs_embeds: torch.Tensor, prompt_mask: torch.Tensor,
    embed_grid: Callable[[torch.Tensor], torch.Tensor], max_frames: int, config: DecodingConfig | None = None,
    generator: torch.Generator | None = None,
) -> list[torch.Tensor]:
    """Generate audio codes with the delay pattern after left-padded prompts ending in ``<audio>``.

    Args:
        model: the backbone.
        heads: the per-codebook heads.
        inputs_embeds: ``[B, T, d]`` embedded prompts.
        prompt_mask: bool ``[B, T]``, False on left padding.
        embed_grid: one position's codes ``[B, K]`` (``EMPTY`` allowed) -> its input embedding ``[B, d]``.
        max_frames: frames after which level 0 is made to end.
        config: ``greedy`` or ``sample`` (temperature, top-k, top-p); beam search is not supported.
        generator: random generator for sampling.

    Returns:
        Per sample, codes ``[K, T_i]`` with ``1 <= T_i <= max_frames``.
    """
    config = config or DecodingConfig()
    if config.strategy == "beam" or max_frames < 1:
        raise ValueError(
            f"delayed generation supports greedy and sample decoding with max_frames >= 1, got "
            f"{config.strategy!r}, {max_frames}"
        )
    K, C = heads.num_codebooks, heads.cardinality
    B, dev = inputs_embeds.shape[0], inputs_embeds.device
    stepper = _Stepper(model, heads, prompt_mask, max_frames + K)
    logits = stepper.prefill(inputs_embeds)  # (B, K, C + 1)
    length = torch.full((B,), max_frames, dtype=torch.long, device=dev)  # frames, fixed once level 0 ends
    ended = torch.zeros(B, dtype=torch.bool, device=dev)
    grid = torch.full((B, K, max_frames + K - 1), EMPTY, dtype=torch.long, device=dev)
    level = torch.arange(K, device=dev)
    for s in range(max_frames + K - 1):
        frame = s - level  # (K,) which frame each level writes at this position
        if s == 0:
            logits[:, 0, C] = float("-inf")  # at least one frame
        if s >= max_frames:
            logits[:, 0, :C] = float("-inf")  # level 0 must end
        pick = _pick(logits.reshape(B * K, C + 1), config, generator).view(B, K)
        newly = ~ended & (pick[:, 0] == C)
        length = torch.where(newly, torch.full_like(length, s), length)
        ended |= newly
        live = (frame >= 0)[None] & (frame[None] < length[:, None])  # (B, K)
        cells = torch.where(live, pick.clamp(max=C - 1), EMPTY)
        grid[:, :, s] = cells
        if bool((ended & (s >= length + K - 2)).all()) or s == max_frames + K - 2:
            break
        logits = stepper.step_embeds(embed_grid(cells))
    return [undo_delay(grid[b, :, : int(length[b]) + K - 1]) for b in range(B)]
