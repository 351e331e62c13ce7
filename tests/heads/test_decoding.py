import pytest
import torch

from anytoken.heads import DecodingConfig, GrammarConstraint, VocabularyConstraint, generate
from anytoken.tokenizers import SegmentGrammar, Special, Tokens, build_sequences


def _prompts(space, bpe, texts=("a", "a small red")):
    samples = [
        [Special("<bos>"), Special("<caption>"), Tokens("text", bpe.encode(t), close=False)] for t in texts
    ]
    batch = build_sequences(samples, space, max_length=64, padding_side="left")
    return batch.input_ids, batch.sample_ids > 0


def _run(model, head, space, ids, mask, constraint, **kw):
    return generate(
        model, head, model.embed_ids(ids), mask, constraint, DecodingConfig(**kw), pad_id=space.pad_id
    )


def test_greedy_on_kv_cache_equals_full_recompute(space, bpe, tiny_model):
    model, head = tiny_model
    ids, mask = _prompts(space, bpe, ["a small red"])
    con = GrammarConstraint(space, "text", SegmentGrammar.open_ended(bpe.vocab_size, max_length=6))
    out = _run(model, head, space, ids, mask, con, max_new_tokens=7)
    seq, counts = ids.clone(), torch.zeros(1, dtype=torch.long)
    for tok in out[0]:  # recompute the whole prefix each step and check the same token wins
        logits = head(model(seq))[:, -1].masked_fill(~con.allowed(counts), float("-inf"))
        assert logits.argmax(-1).item() == tok.item()
        seq, counts = torch.cat([seq, tok.view(1, 1)], 1), counts + 1
        if tok == con.end_id:
            break


@pytest.mark.parametrize("strategy", ["greedy", "sample", "beam"])
def test_constrained_decoding_never_leaves_its_range(space, bpe, tiny_model, strategy):
    model, head = tiny_model
    ids, mask = _prompts(space, bpe)
    con = GrammarConstraint(space, "image", SegmentGrammar.fixed(16, 5))
    out = _run(model, head, space, ids, mask, con, strategy=strategy, max_new_tokens=10, top_k=5, top_p=0.9)
    r = space.range("image")
    for row in out:
        assert ((row >= r.start) & (row < r.stop)).sum() == 5  # exactly the grid
        assert row[5] == space.end("image") and (row[6:] == space.pad_id).all()


def test_cycling_grammar_alternates_ranges(space, bpe, tiny_model):
    model, head = tiny_model
    ids, mask = _prompts(space, bpe)
    grammar = SegmentGrammar(steps=(((0, 8),), ((8, 16),)), min_length=6, max_length=6)
    out = _run(
        model,
        head,
        space,
        ids,
        mask,
        GrammarConstraint(space, "image", grammar),
        strategy="sample",
        max_new_tokens=8,
    )
    local = out[:, :6] - space.range("image").start
    assert (local[:, 0::2] < 8).all() and (local[:, 1::2] >= 8).all()


def test_beam_of_one_equals_greedy_and_topk_one_sampling_equals_greedy(space, bpe, tiny_model):
    model, head = tiny_model
    ids, mask = _prompts(space, bpe)
    con = GrammarConstraint(space, "text", SegmentGrammar.open_ended(bpe.vocab_size, max_length=8))
    greedy = _run(model, head, space, ids, mask, con, max_new_tokens=9)
    assert torch.equal(
        _run(model, head, space, ids, mask, con, strategy="beam", num_beams=1, max_new_tokens=9), greedy
    )
    assert torch.equal(
        _run(model, head, space, ids, mask, con, strategy="sample", top_k=1, max_new_tokens=9), greedy
    )


def test_vocabulary_constraint_never_samples_padding_ids(space, bpe, tiny_model):
    model, head = tiny_model
    ids, mask = _prompts(space, bpe)
    out = _run(
        model, head, space, ids, mask, VocabularyConstraint(space), strategy="sample", max_new_tokens=20
    )
    done = torch.cumsum(out == space.eos_id, 1) > 0
    produced = out[~done | (out == space.eos_id)]
    assert (produced < space.used_size).all() and (produced != space.pad_id).all()


def test_bad_decoding_config():
    with pytest.raises(ValueError, match="strategy"):
        DecodingConfig(strategy="nucleus")
    with pytest.raises(ValueError, match="top_p"):
        DecodingConfig(top_p=1.5)


def test_prefix_lm_prompts_generate_under_the_training_mask(space, bpe, tiny_model):
    from anytoken.tokenizers import Embeds

    model, head = tiny_model
    samples = [
        [
            Special("<bos>"),
            Embeds("image", 3, 0),
            Special("<caption>"),
            Tokens("text", bpe.encode("a"), close=False),
        ]
    ]
    batch = build_sequences(samples, space, max_length=64, mask="prefix", padding_side="left")
    embeds = (
        model.embed_ids(batch.input_ids)
        + torch.randn(1, batch.input_ids.shape[1], 64) * batch.embed_mask[..., None]
    )
    con = GrammarConstraint(space, "text", SegmentGrammar.open_ended(bpe.vocab_size, max_length=1))
    out = generate(
        model,
        head,
        embeds,
        batch.sample_ids > 0,
        con,
        DecodingConfig(max_new_tokens=1),
        pad_id=space.pad_id,
        prompt_blocks=batch.prefix_blocks,
    )
    full = head(model(inputs_embeds=embeds, attn_mask=batch.attention_mask()))[:, -1]
    expected = full.masked_fill(~con.allowed(torch.zeros(1, dtype=torch.long)), float("-inf")).argmax(-1)
    assert out[0, 0] == expected[0]
    causal = head(model(inputs_embeds=embeds))[:, -1]
    assert not torch.allclose(causal, full)  # the mask matters, so the check above has teeth


@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_generation_stops_where_the_context_ends(space, bpe, tiny_model, strategy):
    model, head = tiny_model
    ids, mask = _prompts(space, bpe)
    room = model.config.max_seq_len - ids.shape[1]
    con = GrammarConstraint(space, "text", SegmentGrammar.open_ended(bpe.vocab_size, max_length=10_000))
    out = _run(model, head, space, ids, mask, con, strategy=strategy, max_new_tokens=room + 50)
    assert out.shape[1] <= room
    full = torch.randint(0, bpe.vocab_size, (1, model.config.max_seq_len))
    with pytest.raises(ValueError, match="fills the context"):
        _run(model, head, space, full, torch.ones_like(full, dtype=torch.bool), con)
