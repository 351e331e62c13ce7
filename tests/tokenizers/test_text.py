import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from anytoken.tokenizers import BPETokenizer, CLIPBPETokenizer, Tokenizer, tokenizer_from_spec


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=60))
def test_bpe_round_trip_is_exact_for_any_unicode(text):
    bpe = BPETokenizer.train(["a small red square", "a large blue circle"] * 5, vocab_size=280)
    ids = bpe.encode(text)
    assert ids.dtype == torch.long and ids.dim() == 1
    assert ids.numel() == 0 or (0 <= int(ids.min()) and int(ids.max()) < bpe.vocab_size)
    assert bpe.decode(ids) == text


def test_bpe_learns_subwords(bpe):
    assert bpe.vocab_size == 300
    # trained merges make frequent words single tokens: far fewer ids than bytes
    assert len(bpe.encode("a small red square at the top left")) < 15


def test_bpe_repeats_give_fresh_tensors_of_the_same_ids(bpe):
    first = bpe.encode("a small red square")
    first[0] = -1  # a caller's edit never reaches the next caller
    again = bpe.encode("a small red square")
    assert again[0] != -1 and bpe.decode(again) == "a small red square"


def test_save_load_and_spec(tmp_path, bpe):
    bpe.save_pretrained(tmp_path / "tok")
    loaded = Tokenizer.from_pretrained(tmp_path / "tok")
    assert isinstance(loaded, BPETokenizer)
    text = "a large white diamond"
    assert torch.equal(loaded.encode(text), bpe.encode(text))
    assert torch.equal(tokenizer_from_spec(bpe.spec()).encode(text), bpe.encode(text))


def test_clip_bpe_ships_with_open_clip():
    clip = CLIPBPETokenizer()
    assert clip.vocab_size == 49408
    assert clip.decode(clip.encode("A photo of  a cat")) == "a photo of a cat"


@pytest.mark.parametrize("bad", [[-1], [10**6], torch.tensor([1.5])])
def test_decode_rejects_bad_ids(bpe, bad):
    with pytest.raises(ValueError, match="bpe"):
        bpe.decode(bad)


def test_encode_rejects_non_text(bpe):
    with pytest.raises(ValueError, match="expected a str"):
        bpe.encode(123)


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer_config.json"):
        Tokenizer.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="not a valid HuggingFace tokenizer"):
        BPETokenizer("{not json")
