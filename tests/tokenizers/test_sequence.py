import pytest
import torch

from anytoken.tokenizers import Embeds, Special, Tokens, build_sequences
from anytoken.tokenizers.sequence import IGNORE_INDEX


def _caption_sample(bpe, text, source=0, n=4):
    return [
        Special("<bos>"),
        Embeds("image", n, source),
        Special("<caption>"),
        Tokens("text", bpe.encode(text), target=True),
    ]


def test_targets_are_next_tokens_of_target_segments_only(space, bpe):
    batch = build_sequences([_caption_sample(bpe, "a small red square")], space, max_length=64)
    ids, tgt = batch.input_ids[0], batch.targets[0]
    start = (ids == space.begin("text")).nonzero().item()
    text_ids = space.to_global("text", bpe.encode("a small red square"))
    assert torch.equal(tgt[start : start + len(text_ids)], text_ids)
    assert tgt[start + len(text_ids)] == space.end("text")
    assert (tgt[:start] == IGNORE_INDEX).all()
    assert batch.embed_mask[0].sum() == 4 and batch.embed_sources.tolist() == [0]
    assert batch.attention_mask() is None  # causal + right padding: plain causal is exact


def test_loss_weights_per_modality(space, bpe):
    batch = build_sequences(
        [_caption_sample(bpe, "a large blue circle")], space, max_length=64, loss_weights={"text": 0.5}
    )
    w = batch.loss_weights[batch.targets != IGNORE_INDEX]
    assert torch.allclose(w, torch.full_like(w, 0.5))


def test_prefix_mask_is_bidirectional_inside_the_image_only(space, bpe):
    batch = build_sequences([_caption_sample(bpe, "a small red square")], space, max_length=64, mask="prefix")
    mask = batch.attention_mask()[0, 0]
    img = batch.embed_mask[0].nonzero().squeeze(-1)
    assert mask[img[0], img[-1]]  # first image position sees the last one
    text = (batch.input_ids[0] == space.begin("text")).nonzero().item()
    assert not mask[img[-1], text]  # but never the future text
    assert mask[text, img[0]]


def test_packing_keeps_samples_apart(space, bpe):
    samples = [
        _caption_sample(bpe, t, i)
        for i, t in enumerate(["a small red square", "a large blue circle", "a small green triangle"])
    ]
    padded = build_sequences(samples, space, max_length=64)
    packed = build_sequences(samples, space, max_length=64, pack=True)
    assert packed.input_ids.shape[0] < padded.input_ids.shape[0]
    assert packed.num_target_tokens == padded.num_target_tokens
    mask = packed.attention_mask()[0, 0]
    sid = packed.sample_ids[0]
    cross = (sid[:, None] != sid[None, :]) & (sid[:, None] > 0) & (sid[None, :] > 0)
    assert not (mask & cross).any()
    # positions restart in each packed sample
    for s in sid.unique():
        if s > 0:
            assert packed.positions[0, sid == s].tolist() == list(range(int((sid == s).sum())))
    assert sorted(packed.embed_sources.tolist()) == [0, 1, 2]


def test_left_padding_for_prompts(space, bpe):
    prompts = [
        [Special("<bos>"), Tokens("text", bpe.encode(t), close=False)] for t in ["a", "a small red square"]
    ]
    batch = build_sequences(prompts, space, max_length=64, padding_side="left")
    assert (batch.input_ids[:, -1] != space.pad_id).all()
    assert batch.sample_ids[0, 0] == 0 and batch.attention_mask() is not None


def test_too_long_and_bad_segments_raise(space, bpe):
    with pytest.raises(ValueError, match="more than max_length=8"):
        build_sequences([_caption_sample(bpe, "a small red square")], space, max_length=8)
    with pytest.raises(ValueError, match="1-D"):
        build_sequences([[Tokens("text", torch.zeros(2, 2, dtype=torch.long))]], space, max_length=8)
    with pytest.raises(ValueError, match="at least one sample"):
        build_sequences([], space, max_length=8)


def test_every_layout_holds_each_sample_as_its_own_batch_does(space, bpe):
    texts = ["a small red square", "a large blue circle at the top", "a", "a small green triangle"]
    samples = [
        [Special("<bos>"), Embeds("image", 2 + i, source=i, prefix=True), Special("<vqa>"),
         Tokens("text", bpe.encode(t), prefix=i % 2 == 0), Tokens("text", bpe.encode(t[:3]), target=True)]
        for i, t in enumerate(texts)
    ]
    kwargs = {"space": space, "max_length": 48, "mask": "prefix", "loss_weights": {"text": 0.5},
              "sample_weights": [1.0, 2.0, 0.0, 3.0]}
    alone = [build_sequences([s], **kwargs | {"sample_weights": [w]})
             for s, w in zip(samples, kwargs["sample_weights"])]
    for layout in ({}, {"pack": True}, {"padding_side": "left"}):
        batch = build_sequences(samples, **kwargs, **layout)
        seen = 0
        for b in range(batch.input_ids.shape[0]):
            for k in batch.sample_ids[b].unique().tolist():
                if k == 0:
                    continue
                at = batch.sample_ids[b] == k
                i = next(j for j, a in enumerate(alone) if a.input_ids.shape[1] == int(at.sum())
                         and torch.equal(a.input_ids[0], batch.input_ids[b, at]))
                for field in ("targets", "loss_weights", "modality_ids", "positions", "embed_mask"):
                    got, want = getattr(batch, field)[b, at], getattr(alone[i], field)[0]
                    assert torch.equal(got, want), (layout, field)
                blocks = batch.prefix_blocks[b, at]  # numbered per row: the same blocks, shifted
                ref = alone[i].prefix_blocks[0]
                assert torch.equal(blocks > 0, ref > 0)
                assert len(blocks[blocks > 0].unique()) == len(ref[ref > 0].unique())
                seen += 1
        assert seen == len(samples)
        assert sorted(batch.embed_sources.tolist()) == [0, 1, 2, 3]
        if not layout.get("pack"):
            assert batch.embed_sources.tolist() == [0, 1, 2, 3]
