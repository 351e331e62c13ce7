"""Classifier-free guidance in generate(): equals recomputing both prompts, off at scale 1, any strategy."""

from __future__ import annotations

import pytest
import torch

from anytoken.heads import DecodingConfig, GrammarConstraint, generate
from anytoken.tokenizers import SegmentGrammar, Special, Tokens, build_sequences


def _left(samples, space):  # noqa: ANN001, ANN202
    batch = build_sequences(samples, space, max_length=64, padding_side="left")
    return batch.input_ids, batch.sample_ids > 0


def _prompts(space, bpe):  # noqa: ANN001, ANN202
    cond = [
        [
            Special("<bos>"),
            Tokens("text", bpe.encode(t)),
            Tokens("image", torch.empty(0, dtype=torch.long), close=False),
        ]
        for t in ("a small red", "a")
    ]
    uncond = [[Special("<bos>"), Tokens("image", torch.empty(0, dtype=torch.long), close=False)]] * 2
    return _left(cond, space), _left(uncond, space)


def _generate(model, head, space, cond, uncond, constraint, **kw):  # noqa: ANN001, ANN202
    (ids, mask), (uids, umask) = cond, uncond
    return generate(
        model,
        head,
        model.embed_ids(ids),
        mask,
        constraint,
        DecodingConfig(**kw),
        pad_id=space.pad_id,
        uncond_embeds=model.embed_ids(uids),
        uncond_mask=umask,
    )


def test_guided_greedy_equals_recomputing_both_prompts(space, bpe, tiny_model) -> None:
    model, head = tiny_model
    cond, uncond = _prompts(space, bpe)
    con = GrammarConstraint(space, "image", SegmentGrammar.fixed(16, 6))
    scale = 3.0
    out = _generate(model, head, space, cond, uncond, con, max_new_tokens=7, guidance_scale=scale)
    for row in range(2):
        seq_c = cond[0][row][cond[1][row]][None]  # the prompt without its left padding
        seq_u = uncond[0][row][uncond[1][row]][None]
        counts = torch.zeros(1, dtype=torch.long)
        for tok in out[row]:
            c, u = head(model(seq_c))[:, -1], head(model(seq_u))[:, -1]
            logits = (u + scale * (c - u)).masked_fill(~con.allowed(counts), float("-inf"))
            assert logits.argmax(-1).item() == tok.item()
            if tok == con.end_id:
                break
            seq_c, seq_u = torch.cat([seq_c, tok.view(1, 1)], 1), torch.cat([seq_u, tok.view(1, 1)], 1)
            counts += 1


def test_scale_one_is_plain_decoding(space, bpe, tiny_model) -> None:
    model, head = tiny_model
    cond, uncond = _prompts(space, bpe)
    con = GrammarConstraint(space, "image", SegmentGrammar.fixed(16, 6))
    plain = generate(model, head, model.embed_ids(cond[0]), cond[1], con, DecodingConfig(max_new_tokens=7))
    assert torch.equal(_generate(model, head, space, cond, uncond, con, max_new_tokens=7), plain)
    guided = _generate(model, head, space, cond, uncond, con, max_new_tokens=7, guidance_scale=0.0)
    unconditional = generate(
        model, head, model.embed_ids(uncond[0]), uncond[1], con, DecodingConfig(max_new_tokens=7)
    )
    assert torch.equal(guided, unconditional)  # scale 0: the unconditional model alone


@pytest.mark.parametrize("strategy", ["sample", "beam"])
def test_guidance_with_every_strategy_keeps_the_grammar(space, bpe, tiny_model, strategy: str) -> None:
    model, head = tiny_model
    cond, uncond = _prompts(space, bpe)
    con = GrammarConstraint(space, "image", SegmentGrammar.fixed(16, 5))
    out = _generate(
        model,
        head,
        space,
        cond,
        uncond,
        con,
        strategy=strategy,
        max_new_tokens=8,
        guidance_scale=2.0,
        num_beams=3,
        top_k=4,
    )
    r = space.range("image")
    for row in out:
        assert ((row >= r.start) & (row < r.stop)).sum() == 5 and row[5] == space.end("image")


def test_guidance_needs_unconditional_prompts(space, bpe, tiny_model) -> None:
    model, head = tiny_model
    (ids, mask), _ = _prompts(space, bpe)
    con = GrammarConstraint(space, "image", SegmentGrammar.fixed(16, 5))
    with pytest.raises(ValueError, match="unconditional"):
        generate(model, head, model.embed_ids(ids), mask, con, DecodingConfig(guidance_scale=2.0))
