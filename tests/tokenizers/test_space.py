import pytest
import torch

from anytoken.tokenizers import SegmentGrammar, TokenSpace


def test_layout_specials_then_ranges_padded_to_64(space):
    assert space.vocab_size % 64 == 0 and space.vocab_size >= space.used_size
    assert space.special("<pad>") == 0 and space.bos_id == 1 and space.eos_id == 2
    text, image = space.range("text"), space.range("image")
    assert text.stop == image.start and len(image) == 16
    assert max(space.specials.values()) < text.start
    assert {space.begin("image"), space.end("image"), space.task("caption")} <= set(space.specials.values())


def test_global_local_round_trip(space):
    ids = torch.arange(16)
    g = space.to_global("image", ids)
    assert torch.equal(space.to_local(g, "image"), ids)
    assert (space.modality_of(g) == space.modality_index("image")).all()


def test_errors_name_the_problem(space):
    with pytest.raises(ValueError, match=r"image ids must lie in \[0, 16\)"):
        space.to_global("image", torch.tensor([16]))
    with pytest.raises(ValueError, match="not text tokens"):
        space.to_local(torch.tensor([space.bos_id]), "text")
    with pytest.raises(ValueError, match="unknown modality 'audio'"):
        space.range("audio")
    with pytest.raises(ValueError, match="unknown task tag"):
        space.task("pose")


def test_persistence_and_mismatch(space):
    assert TokenSpace.from_dict(space.to_dict()) == space
    other = TokenSpace({"text": 300, "image": 32}, tasks=("caption", "vqa"))
    with pytest.raises(ValueError, match="TokenSpace differs"):
        space.check_same(other)
    assert "image" in space.describe()


def test_grammar_mask_covers_only_the_modality(space):
    mask = space.grammar_mask("image", SegmentGrammar(steps=(((0, 8),), ((8, 16),))))
    r = space.range("image")
    assert mask.shape == (2, space.vocab_size)
    assert mask[0, r.start : r.start + 8].all() and not mask[0, r.start + 8 :].any()
    assert mask[1, r.start + 8 : r.stop].all() and mask[1].sum() == 8
    with pytest.raises(ValueError, match="exceeds"):
        space.grammar_mask("image", SegmentGrammar.fixed(17, 4))
