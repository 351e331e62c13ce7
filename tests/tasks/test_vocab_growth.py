"""Starting a model from another one whose text tokenizer differs: ids move by vocabulary entry."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from training import train_steps

from anytoken.models import AnytokenModel
from anytoken.models.growth import grow_into, piece_map, token_id_map
from anytoken.models.projector import TokenPositions
from anytoken.tasks.captioning import CaptioningModule
from anytoken.tasks.data.captioning import CaptioningDataModule
from anytoken.tasks.data.vqa import VQADataModule
from anytoken.tasks.vqa import VQAModule
from anytoken.tokenizers import BPETokenizer, Tokens
from anytoken.tokenizers.sequence import build_sequences

MODEL = {
    "backbone": {"n_layer": 1, "n_head": 2, "d_model": 32, "max_seq_len": 96},
    "image_encoder": {"source": "cnn", "image_size": 32, "cnn_width": 8, "cnn_grid": 4},
}


def test_piece_map_pairs_the_ids_of_equal_vocabulary_entries() -> None:
    captions = ["a small red circle at the top", "a large blue square in the center"] * 20
    old = BPETokenizer.train(captions, vocab_size=280)
    new = BPETokenizer.train(captions + ["what color is the circle?", "how many squares are there?"] * 20,
                             vocab_size=300)
    mapping = piece_map(old, new)
    assert mapping.shape == (old.vocab_size,)
    old_pieces, new_pieces = old.pieces(), new.pieces()
    for i, j in enumerate(mapping.tolist()):
        assert j == -1 or old_pieces[i] == new_pieces[j]
    assert (mapping[:256] >= 0).all()  # the byte alphabet is shared
    ids = old.encode("a small red circle")
    kept = ids[mapping[ids] >= 0]
    assert len(kept) and new.decode(mapping[kept]) == old.decode(kept)  # mapped ids spell the same text
    assert piece_map(old, object()) is None


@pytest.mark.parametrize("head", ["generate", "classify"])
def test_a_vqa_model_starts_from_a_captioner_with_another_bpe(tmp_path, head: str, one_thread) -> None:
    captions = CaptioningDataModule(num_train=32, num_val=4, num_test=4, num_heldout=4, bpe_vocab_size=280,
                                    image_size=32, batch_size=8)
    task = CaptioningModule(captions.vocab, lr=3e-3, **MODEL)
    batch = next(iter(captions.train_dataloader()))
    train_steps(task, batch, 5)
    captioner = task.model.eval()
    with torch.no_grad():
        captioner.backbone.embed.weight.mul_(5)  # trained embeddings outgrow the 0.02 of a fresh init
    release = captioner.save_pretrained(tmp_path / "captioner")
    questions = VQADataModule(num_train=32, num_val=4, num_test=4, num_heldout=4, bpe_vocab_size=300,
                              image_size=32, batch_size=8)
    assert questions.tokenizer.spec() != captions.tokenizer.spec()  # its BPE also saw the questions
    dropout = {"backbone": MODEL["backbone"] | {"dropout": 0.1}}  # a training setting, not architecture
    grown = VQAModule(questions.vocab, head=head, init_from=str(release), **(MODEL | dropout))
    assert grown.hparams.init_from is None  # grown once; checkpoints carry the weights
    model = grown.model.eval()
    images = batch["images"][:2]
    prompt = [[*captioner.image_prompt(n, "caption"), Tokens("text", torch.empty(0, dtype=torch.long),
                                                            close=False)] for n in range(2)]
    with torch.no_grad():
        old_seq = build_sequences(prompt, captioner.space, max_length=96, mask=captioner.mask)
        old_embeds = captioner.embed(old_seq, {"images": images})
        old = captioner.lm_head(captioner.hidden_states(old_seq, old_embeds))[:, -1]  # (2, V_old)
        new_seq = build_sequences(prompt, model.space, max_length=96, mask=model.mask)
        new = model.lm_head(model.hidden_states(new_seq, model.embed(new_seq, {"images": images})))[:, -1]
    mapping = token_id_map(captioner.space, model.space, local_maps={
        "text": piece_map(captioner.tokenizers["text"], model.tokenizers["text"])})
    kept = torch.nonzero(mapping >= 0).squeeze(1)
    assert len(kept) > captioner.tokenizers["text"].vocab_size // 2
    torch.testing.assert_close(new[:, mapping[kept]], old[:, kept], rtol=1e-4, atol=1e-4)
    embed = model.backbone.embed.weight
    fresh = torch.ones(len(embed), dtype=torch.bool)
    fresh[mapping[kept]] = False
    scale = embed[fresh].norm(dim=1).mean() / embed[mapping[kept]].norm(dim=1).mean()
    assert 0.7 < scale < 1.3, scale  # new ids (question words) start as visible as the carried ones
    with pytest.raises(FileNotFoundError, match="train it first"):
        VQAModule(questions.vocab, init_from=str(tmp_path / "no_captioner"), **MODEL)


def test_image_positions_start_fresh_on_a_captioner_without_them(tmp_path, one_thread) -> None:
    captions = CaptioningDataModule(num_train=8, num_val=4, num_test=4, num_heldout=4, image_size=32,
                                    batch_size=4)
    captioner = CaptioningModule(captions.vocab, **MODEL).model
    release = captioner.save_pretrained(tmp_path / "captioner")
    questions = VQADataModule(num_train=8, num_val=4, num_test=4, num_heldout=4, image_size=32, batch_size=4)
    task = VQAModule(questions.vocab, init_from=str(release), image_positions=True, **MODEL)
    model = task.model
    *body, positions = model.projector
    assert isinstance(positions, TokenPositions) and positions.embedding.shape == (1, 16, 32)
    projection = nn.Sequential(*body).state_dict().values()
    for mine, theirs in zip(projection, captioner.projector.state_dict().values()):
        torch.testing.assert_close(mine, theirs)  # the projection is the captioner's, the positions are new
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        features = model.image_encoder(images)
        expected = captioner.projector(features) + positions.embedding
        torch.testing.assert_close(model.projector(features), expected)
    with pytest.raises(ValueError, match="set image_positions too"):
        VQAModule(questions.vocab, init_from=str(task.export(tmp_path / "vqa")), **MODEL)
    with pytest.raises(ValueError, match=r"image tokens \[B, 16, 32\]"):
        positions(torch.zeros(2, 9, 32))


def test_an_image_encoder_of_another_architecture_is_a_clear_error(tmp_path, one_thread) -> None:
    captions = CaptioningDataModule(num_train=8, num_val=4, num_test=4, num_heldout=4, image_size=32,
                                    batch_size=4)
    release = CaptioningModule(captions.vocab, **MODEL).export(tmp_path / "captioner")
    questions = VQADataModule(num_train=8, num_val=4, num_test=4, num_heldout=4, image_size=32, batch_size=4)
    frozen = MODEL | {"image_encoder": MODEL["image_encoder"] | {"frozen": True}}
    assert VQAModule(questions.vocab, init_from=str(release), **frozen).model.image_encoder.config.frozen
    value = MODEL | {"image_encoder": MODEL["image_encoder"] | {"value_channel": True}}
    with pytest.raises(ValueError, match=r"image encoders differ .*'value_channel': \(False, True\)"):
        VQAModule(questions.vocab, init_from=str(release), **value)


def test_a_format_of_the_same_settings_carries_its_own_weights(one_thread) -> None:
    questions = VQADataModule(num_train=8, num_val=4, num_test=4, num_heldout=4, image_size=32, batch_size=4)

    def vqa(**settings) -> AnytokenModel:
        return AnytokenModel(questions.vocab, {"vqa": {"kind": "vqa", **settings}}, MODEL["backbone"],
                             MODEL["image_encoder"])

    source, target = vqa(head="classify"), vqa(head="classify")
    assert grow_into(source, target)["formats"] == ["vqa"]
    mine, theirs = target.formats["vqa"].state_dict(), source.formats["vqa"].state_dict()
    assert mine and all(torch.equal(mine[k], theirs[k]) for k in theirs)  # the classifier came along
    assert grow_into(source, vqa(head="classify", pooling="mean"))["formats"] == []  # other settings: fresh
