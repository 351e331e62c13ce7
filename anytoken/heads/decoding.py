"""Generation on the KV cache: greedy, temperature/top-k/top-p sampling and beam search, constrained.

A ``GrammarConstraint`` turns the ``SegmentGrammar`` a tokenizer declares into a per-step mask over the
TokenSpace, so a new modality never adds decoding code. Classifier-free guidance works with every
strategy: conditional and unconditional prompts run as one batch and tokens are picked from
``uncond + scale * (cond - uncond)`` logits; each chosen token continues both prompts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F

from anytoken.backbone import CausalTransformer
from anytoken.tokenizers.base import SegmentGrammar
from anytoken.tokenizers.space import TokenSpace


@dataclass
class DecodingConfig:
    """How to pick tokens."""

    strategy: Literal["greedy", "sample", "beam"] = "greedy"
    max_new_tokens: int = 64  # hard bound on generated tokens (the end marker included)
    temperature: float = 1.0  # sampling only
    top_k: int | None = None  # sampling only: keep the k most likely ids
    top_p: float | None = None  # sampling only: keep the smallest set with this much probability
    num_beams: int = 4  # beam search only
    length_penalty: float = 1.0  # beam search: score / length ** length_penalty
    guidance_scale: float = 1.0  # classifier-free guidance; 1.0 = off (needs unconditional prompts otherwise)

    def __post_init__(self) -> None:
        if self.strategy not in ("greedy", "sample", "beam"):
            raise ValueError(f"strategy must be 'greedy', 'sample' or 'beam', got {self.strategy!r}")
        if self.max_new_tokens < 1 or self.temperature <= 0 or self.num_beams < 1:
            raise ValueError(f"need max_new_tokens >= 1, temperature > 0, num_beams >= 1: {self}")
        if self.top_k is not None and self.top_k < 1 or self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"need top_k >= 1 and 0 < top_p <= 1: {self}")


class Constraint(Protocol):
    end_id: int

    def allowed(self, counts: torch.Tensor) -> torch.Tensor:
        """Bool ``[B, V]``: ids allowed after ``counts`` ``[B]`` tokens of the segment."""
        ...


class GrammarConstraint:
    """Generate exactly one segment of ``modality`` that ``grammar`` (the tokenizer's ``grammar()``) allows,
    followed by the modality's end marker."""

    def __init__(self, space: TokenSpace, modality: str, grammar: SegmentGrammar) -> None:
        self.table = space.grammar_mask(modality, grammar)  # (S, V)
        self.grammar = grammar
        self.end_id = space.end(modality)

    def allowed(self, counts: torch.Tensor) -> torch.Tensor:
        table = self.table.to(counts.device)
        g, period = self.grammar, len(self.grammar.steps)
        mask = table[counts % period].clone()  # (B, V)
        if g.max_length is not None:
            mask[counts >= g.max_length] = False
        mask[:, self.end_id] = (counts >= g.min_length) & (counts % period == 0)
        return mask


class VocabularyConstraint:
    """Any used id except padding (free generation), until ``end_id``."""

    def __init__(self, space: TokenSpace, end_id: int | None = None) -> None:
        self.end_id = space.eos_id if end_id is None else end_id
        self.mask = torch.zeros(space.vocab_size, dtype=torch.bool)
        self.mask[: space.used_size] = True
        self.mask[space.pad_id] = False

    def allowed(self, counts: torch.Tensor) -> torch.Tensor:
        return self.mask.to(counts.device).expand(counts.shape[0], -1)


def _filter_logits(logits: torch.Tensor, config: DecodingConfig) -> torch.Tensor:
    logits = logits / config.temperature
    if config.top_k is not None:
        kth = logits.topk(min(config.top_k, logits.shape[-1]), dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if config.top_p is not None:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) >= config.top_p  # keep the first id that crosses top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def _pick(logits: torch.Tensor, config: DecodingConfig, generator: torch.Generator | None) -> torch.Tensor:
    """One id per row of ``logits`` ``[B, V]``: the argmax (greedy), else a sample of the filtered softmax."""
    if config.strategy == "greedy":
        return logits.argmax(-1)
    probs = _filter_logits(logits, config).softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


class _Stepper:
    """Runs the model one token at a time on the KV cache, tracking key validity and positions."""

    def __init__(
        self, model: CausalTransformer, head: nn.Module, prompt_mask: torch.Tensor, max_new: int,
        prompt_blocks: torch.Tensor | None = None,
    ) -> None:
        B, T = prompt_mask.shape
        self.blocks = prompt_blocks  # (B, T) prefix-LM block ids (0 = causal), as in training
        self.model, self.head = model, head
        self.cache = model.init_kv_cache(B, T + max_new)
        self.valid = torch.zeros(B, T + max_new, dtype=torch.bool, device=prompt_mask.device)
        self.valid[:, :T] = prompt_mask
        self.positions = (prompt_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, T)

    def prefill(self, inputs_embeds: torch.Tensor) -> torch.Tensor:
        """The head's output ``[B, ...]`` at the last prompt position, after reading the prompts."""
        T = inputs_embeds.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool, device=inputs_embeds.device).tril()
        eye = torch.eye(T, dtype=torch.bool, device=inputs_embeds.device)
        mask = (causal & self.valid[:, None, :T]) | eye  # (B, T, T): left padding never attended to
        if self.blocks is not None:  # media prefixes attend bidirectionally, exactly as in training
            b = self.blocks
            mask = mask | ((b[:, :, None] == b[:, None, :]) & (b[:, :, None] > 0))
        h = self.model(inputs_embeds=inputs_embeds, positions=self.positions, attn_mask=mask[:, None],
                       kv_cache=self.cache)
        self.next_pos = self.positions[:, -1] + 1  # (B,)
        return self.head(h[:, -1]).float()  # (B, V)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """The head's output after one more token id per row (``[B]``)."""
        return self._advance(input_ids=tokens[:, None])

    def step_embeds(self, embeds: torch.Tensor) -> torch.Tensor:
        """The head's output after one more input embedding per row (``[B, d]``: a delay-pattern frame)."""
        return self._advance(inputs_embeds=embeds[:, None])

    def _advance(self, **inputs: torch.Tensor) -> torch.Tensor:
        S = self.cache.length + 1
        self.valid[:, S - 1] = True
        h = self.model(**inputs, positions=self.next_pos[:, None], attn_mask=self.valid[:, None, None, :S],
                       kv_cache=self.cache)
        self.next_pos = self.next_pos + 1
        return self.head(h[:, -1]).float()  # (B, V)

    def reorder(self, index: torch.Tensor) -> None:
        self.cache.reorder(index)
        self.valid, self.next_pos = self.valid[index], self.next_pos[index]


class _GuidedStepper:
    """Classifier-free guidance around a ``_Stepper`` whose rows are ``[conditional; unconditional]``:
    returns ``uncond + scale * (cond - uncond)`` logits for the conditional rows and feeds every chosen
    token to both halves, so the decoding loops run unchanged."""

    def __init__(self, stepper: _Stepper, scale: float, half: int) -> None:
        self.inner, self.scale, self.half = stepper, scale, half

    def _mix(self, logits: torch.Tensor) -> torch.Tensor:
        cond, uncond = logits[: self.half], logits[self.half :]  # (B, V) each
        return uncond + self.scale * (cond - uncond)

    def prefill(self, inputs_embeds: torch.Tensor) -> torch.Tensor:
        return self._mix(self.inner.prefill(inputs_embeds))

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._mix(self.inner.step(torch.cat([tokens, tokens])))

    def reorder(self, index: torch.Tensor) -> None:
        self.inner.reorder(torch.cat([index, index + self.half]))
        self.half = len(index)


def _cat_left_padded(cond: torch.Tensor, uncond: torch.Tensor, value: float | bool) -> torch.Tensor:
    """``[cond; uncond]`` ``[2B, T, ...]``, each left-padded along dim 1 to the longer length ``T``."""
    T = max(cond.shape[1], uncond.shape[1])
    out = cond.new_full((len(cond) + len(uncond), T, *cond.shape[2:]), value)
    out[: len(cond), T - cond.shape[1] :] = cond
    out[len(cond) :, T - uncond.shape[1] :] = uncond
    return out


def _stepper(
    model: CausalTransformer, head: nn.Module, embeds: torch.Tensor, mask: torch.Tensor,
    config: DecodingConfig, uncond_embeds: torch.Tensor | None, uncond_mask: torch.Tensor | None,
    blocks: torch.Tensor | None, uncond_blocks: torch.Tensor | None,
) -> tuple[_Stepper | _GuidedStepper, torch.Tensor]:
    """A plain stepper, or with guidance one over ``[cond; uncond]`` prompts left-padded to one length."""
    if config.guidance_scale == 1.0:
        return _Stepper(model, head, mask, config.max_new_tokens, blocks), embeds
    if uncond_embeds is None or uncond_mask is None or len(uncond_embeds) != len(embeds):
        raise ValueError(
            "classifier-free guidance (guidance_scale != 1) needs uncond_embeds and uncond_mask, "
            "one unconditional prompt per prompt"
        )
    if blocks is not None or uncond_blocks is not None:  # a half without blocks is causal (zeros)
        blocks = _cat_left_padded(
            torch.zeros_like(mask, dtype=torch.long) if blocks is None else blocks,
            torch.zeros_like(uncond_mask, dtype=torch.long) if uncond_blocks is None else uncond_blocks,
            0,
        )
    embeds, mask = _cat_left_padded(embeds, uncond_embeds, 0.0), _cat_left_padded(mask, uncond_mask, False)
    stepper = _Stepper(model, head, mask, config.max_new_tokens, blocks)
    return _GuidedStepper(stepper, config.guidance_scale, len(mask) // 2), embeds


def _fit_context(
    config: DecodingConfig, max_seq_len: int, embeds: torch.Tensor, uncond: torch.Tensor | None
) -> DecodingConfig:
    """``config`` with ``max_new_tokens`` cut to the room the context leaves after the (padded) prompts."""
    T = embeds.shape[1]
    if config.guidance_scale != 1.0 and uncond is not None:
        T = max(T, uncond.shape[1])
    room = max_seq_len - T
    if room < 1:
        raise ValueError(f"the prompt ({T} positions) fills the context (max_seq_len={max_seq_len})")
    return replace(config, max_new_tokens=min(config.max_new_tokens, room))


@torch.no_grad()
def generate(
    model: CausalTransformer, head: nn.Module, inputs_embeds: torch.Tensor, prompt_mask: torch.Tensor,
    constraint: Constraint, config: DecodingConfig | None = None, pad_id: int = 0,
    generator: torch.Generator | None = None, uncond_embeds: torch.Tensor | None = None,
    uncond_mask: torch.Tensor | None = None, prompt_blocks: torch.Tensor | None = None,
    uncond_blocks: torch.Tensor | None = None,
) -> torch.Tensor:
    """Continue left-padded prompts by one constrained segment.

    Args:
        model: the backbone.
        head: maps hidden states to logits over the TokenSpace (e.g. ``LMHead``).
        inputs_embeds: ``[B, T, d]`` embedded prompts (left-padded), see ``CausalTransformer.forward``.
        prompt_mask: bool ``[B, T]``, False on left padding.
        constraint: which ids each step allows and which id ends the segment.
        config: decoding strategy; default greedy.
        pad_id: filler after a row has ended.
        generator: random generator for sampling.
        uncond_embeds: ``[B, T', d]`` unconditional prompts (left-padded) for classifier-free guidance;
            used when ``config.guidance_scale != 1``.
        uncond_mask: bool ``[B, T']``, False on their left padding.
        prompt_blocks: ``[B, T]`` prefix-LM block ids (``SequenceBatch.prefix_blocks``; 0 = causal), so a
            model trained with ``mask="prefix"`` generates under the mask it was trained with.
        uncond_blocks: the same for the unconditional prompts.

    Returns:
        ``[B, N]`` generated global ids, the end id included where reached, ``pad_id`` after it.
    """
    config = config or DecodingConfig()
    if inputs_embeds.shape[:2] != prompt_mask.shape:
        raise ValueError(
            f"prompt_mask {tuple(prompt_mask.shape)} must match inputs_embeds {tuple(inputs_embeds.shape)}"
        )
    config = _fit_context(config, model.config.max_seq_len, inputs_embeds, uncond_embeds)
    stepper, inputs_embeds = _stepper(
        model, head, inputs_embeds, prompt_mask, config, uncond_embeds, uncond_mask, prompt_blocks,
        uncond_blocks,
    )
    logits = stepper.prefill(inputs_embeds)
    if config.strategy == "beam":
        return _beam_search(stepper, logits, constraint, config, pad_id)
    B = logits.shape[0]
    counts = torch.zeros(B, dtype=torch.long, device=logits.device)
    done = torch.zeros(B, dtype=torch.bool, device=logits.device)
    out = []
    for step in range(config.max_new_tokens):
        logits = logits.masked_fill(~constraint.allowed(counts), float("-inf"))
        tokens = torch.where(done, pad_id, _pick(logits, config, generator))
        out.append(tokens)
        done |= tokens == constraint.end_id
        counts += 1
        if bool(done.all()) or step == config.max_new_tokens - 1:
            break
        logits = stepper.step(tokens)
    return torch.stack(out, dim=1)


def _beam_search(
    stepper: _Stepper | _GuidedStepper, logits: torch.Tensor, constraint: Constraint, config: DecodingConfig,
    pad_id: int,
) -> torch.Tensor:
    """Beam search; finished beams keep their score and emit ``pad_id``. Returns the best beam per row."""
    B, V = logits.shape
    K = config.num_beams
    dev = logits.device
    stepper.reorder(torch.arange(B, device=dev).repeat_interleave(K))
    logits = logits.repeat_interleave(K, dim=0)  # (B*K, V)
    scores = torch.full((B, K), float("-inf"), device=dev)
    scores[:, 0] = 0.0  # all beams start identical: keep one
    tokens = torch.zeros(B * K, 0, dtype=torch.long, device=dev)
    counts = torch.zeros(B * K, dtype=torch.long, device=dev)
    done = torch.zeros(B * K, dtype=torch.bool, device=dev)
    lengths = torch.zeros(B * K, device=dev)
    for step in range(config.max_new_tokens):
        logp = F.log_softmax(logits.masked_fill(~constraint.allowed(counts), float("-inf")), dim=-1)
        logp[done] = float("-inf")
        logp[done, pad_id] = 0.0
        cand = (scores.view(B * K, 1) + logp).view(B, K * V)
        scores, flat = cand.topk(K, dim=-1)  # (B, K)
        beam = (flat // V + torch.arange(B, device=dev)[:, None] * K).view(-1)  # (B*K,) source rows
        new = (flat % V).view(-1)
        tokens = torch.cat([tokens[beam], new[:, None]], dim=1)
        counts, done, lengths = counts[beam] + 1, done[beam], lengths[beam] + (~done[beam]).float()
        done = done | (new == constraint.end_id)
        if bool(done.all()) or step == config.max_new_tokens - 1:
            break
        stepper.reorder(beam)
        logits = stepper.step(new)
    normed = scores / lengths.view(B, K).clamp(min=1) ** config.length_penalty
    best = normed.argmax(-1) + torch.arange(B, device=dev) * K
    return tokens[best]
