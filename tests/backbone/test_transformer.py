import pytest
import torch

from anytoken.backbone import PRESETS, CausalTransformer, TransformerConfig


@pytest.mark.parametrize("overrides", [{}, {"n_kv_head": 1}, {"tie_embeddings": False}])
def test_forward_shapes_and_every_parameter_gets_a_gradient(overrides):
    from anytoken.heads import LMHead

    model = CausalTransformer(TransformerConfig.from_name("tiny", vocab_size=128, **overrides))
    head = LMHead(model)
    ids = torch.randint(0, 128, (2, 12))
    logits = head(model(ids))
    assert logits.shape == (2, 12, 128) and torch.isfinite(logits).all()
    logits.sum().backward()
    params = list(model.parameters()) + list(head.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


def test_causality_future_tokens_do_not_change_the_past():
    model = CausalTransformer(TransformerConfig.from_name("tiny", vocab_size=64)).eval()
    a = torch.randint(0, 64, (1, 10))
    b = a.clone()
    b[0, 7:] = (b[0, 7:] + 1) % 64
    torch.testing.assert_close(model(a)[:, :7], model(b)[:, :7])


def test_kv_cache_equals_full_recompute():
    model = CausalTransformer(TransformerConfig.from_name("tiny", vocab_size=64, n_kv_head=1)).eval()
    ids = torch.randint(0, 64, (3, 16))
    full = model(ids)
    cache = model.init_kv_cache(3, 16)
    chunks = [model(ids[:, :5], kv_cache=cache)] + [
        model(ids[:, i : i + 1], kv_cache=cache) for i in range(5, 16)
    ]
    torch.testing.assert_close(torch.cat(chunks, dim=1), full, rtol=1e-4, atol=1e-5)
    assert cache.length == 16


def test_inputs_embeds_and_positions():
    model = CausalTransformer(TransformerConfig.from_name("tiny", vocab_size=64)).eval()
    ids = torch.randint(0, 64, (2, 6))
    torch.testing.assert_close(model(inputs_embeds=model.embed_ids(ids)), model(ids))
    # RoPE is relative: a uniform shift changes nothing, other spacings do
    torch.testing.assert_close(
        model(ids, positions=torch.arange(3, 9).expand(2, 6)), model(ids), rtol=1e-4, atol=1e-5
    )
    assert not torch.allclose(model(ids, positions=torch.arange(0, 12, 2).expand(2, 6)), model(ids))


def test_errors_are_clear():
    model = CausalTransformer(TransformerConfig.from_name("tiny", vocab_size=64, max_seq_len=8))
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 64\)"):
        model(torch.tensor([[64]]))
    with pytest.raises(ValueError, match="exceeds max_seq_len=8"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="exactly one of"):
        model()
    with pytest.raises(ValueError, match="KV cache overflow"):
        model(torch.zeros(1, 4, dtype=torch.long), kv_cache=model.init_kv_cache(1, 2))
    with pytest.raises(ValueError, match="vocab_size must be set"):
        CausalTransformer(TransformerConfig.from_name("tiny"))
    with pytest.raises(ValueError, match="d_model divisible by n_head"):
        TransformerConfig(d_model=100, n_head=3)
    with pytest.raises(ValueError, match="unknown backbone preset 'huge'"):
        TransformerConfig.from_name("huge")


def test_presets_exist_and_overrides_recompute_derived_fields():
    assert {"tiny", "small", "base", "large"} <= set(PRESETS)
    c = TransformerConfig.from_name("small", d_model=128)
    assert c.mlp_hidden == TransformerConfig(d_model=128).mlp_hidden
