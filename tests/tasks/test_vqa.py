"""VQA: the VQA v2 format (a fixture written in exactly that format), the DataModule, both answer heads,
evaluation with the official accuracy per question type, release round trip, the configs and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from training import train_steps

import anytoken
from anytoken.cli import main
from anytoken.models.formats import TaskFormat
from anytoken.models.vqa import _soft_cross_entropy
from anytoken.tasks.data.synthetic.scenes import make_scenes
from anytoken.tasks.data.vqa import ByImage, VQADataModule, VQAv2Dataset
from anytoken.tasks.vqa import VQAModule
from anytoken.tokenizers import Tokens, build_sequences

TINY = {
    "backbone": {"n_layer": 1, "n_head": 2, "d_model": 32, "max_seq_len": 96},
    "image_encoder": {"source": "cnn", "image_size": 32, "cnn_width": 8, "cnn_grid": 4},
    "decoding": {"max_new_tokens": 4},
}
@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: one thread is faster, and on a shared CPU far faster (no OpenMP barrier stalls)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


ANSWER_TYPES = {
    "color": "other", "shape": "other", "position": "other", "count": "number",
    "yes/no": "yes/no",
}


def write_vqa_v2(root: Path, subtype: str, num_images: int, first_id: int) -> tuple[str, str, str]:
    """Scenes written as VQA v2: questions JSON, annotations JSON and COCO-named JPEGs."""
    images = root / subtype
    images.mkdir(parents=True)
    questions, annotations = [], []
    for i, scene in enumerate(make_scenes("test", num_images)):
        image_id = first_id + i
        scene.render(48).save(images / f"COCO_{subtype}_{image_id:012d}.jpg", quality=95)
        for k, qa in enumerate(scene.questions()[:4]):
            qid = image_id * 1000 + k
            questions.append({"image_id": image_id, "question": qa.question[0].upper() + qa.question[1:],
                              "question_id": qid})
            humans = [qa.answer] * 7 + ["maybe"] * 3  # VQA v2 has 10 human answers, not always agreeing
            annotations.append({
                "question_type": " ".join(qa.question.split()[:3]), "multiple_choice_answer": qa.answer,
                "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": j + 1}
                            for j, a in enumerate(humans)],
                "image_id": image_id, "answer_type": ANSWER_TYPES[qa.question_type], "question_id": qid,
            })
    q = root / f"v2_OpenEnded_mscoco_{subtype}_questions.json"
    a = root / f"v2_mscoco_{subtype}_annotations.json"
    q.write_text(json.dumps({"info": {}, "task_type": "Open-Ended", "data_type": "mscoco", "license": {},
                             "data_subtype": subtype, "questions": questions}))
    a.write_text(json.dumps({"info": {}, "license": {}, "data_type": "mscoco", "data_subtype": subtype,
                             "annotations": annotations}))
    return str(q), str(a), str(images)


@pytest.fixture(scope="module")
def vqa_v2(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str, str]]:
    root = tmp_path_factory.mktemp("vqa_v2")
    return {"train": write_vqa_v2(root, "train2014", 6, 100), "val": write_vqa_v2(root, "val2014", 3, 900)}


@pytest.fixture(scope="module")
def scenes_data() -> VQADataModule:
    return VQADataModule(num_train=60, num_val=4, num_test=4, num_heldout=4, batch_size=4, image_size=32,
                         bpe_vocab_size=280)


def test_vqa_v2_dataset_reads_the_official_format(vqa_v2) -> None:
    data = VQAv2Dataset(*vqa_v2["val"])
    assert len(data) == 12
    item = data[0]
    assert item["image"].mode == "RGB" and item["image"].size == (48, 48)
    assert len(item["answers"]) == 10 and item["answers"].count("maybe") == 3
    assert item["question"].startswith(("What", "How", "Where", "Is")) and item["question_id"] == 900000
    assert {d["question_type"] for d in data} <= {"other", "number", "yes/no"}
    by_question = VQAv2Dataset(*vqa_v2["val"], question_type_key="question_type")
    assert by_question[0]["question_type"] in {"what color is", "what shape is", "how many objects"}
    groups = ByImage(data)
    assert len(groups) == 3 and all(len(g) == 4 for g in groups.groups)


def test_vqa_v2_dataset_names_what_is_wrong(vqa_v2, tmp_path: Path) -> None:
    questions, annotations, images = vqa_v2["val"]
    with pytest.raises(ValueError, match="not found"):
        VQAv2Dataset(tmp_path / "missing.json", annotations, images)
    with pytest.raises(ValueError, match="not in"):  # the images of val are not in the train folder
        VQAv2Dataset(questions, annotations, vqa_v2["train"][2])
    broken = tmp_path / "annotations.json"
    data = json.loads(Path(annotations).read_text())
    del data["annotations"][1]["answers"]
    broken.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"annotations\[1\] is missing key"):
        VQAv2Dataset(questions, broken, images)
    data["annotations"] = data["annotations"][2:]
    broken.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="no annotation for question_id"):
        VQAv2Dataset(questions, broken, images)
    with pytest.raises(ValueError, match="vqa_train and vqa_val"):
        VQADataModule(source="vqa_v2")


def test_scenes_batches_group_questions_by_image(scenes_data: VQADataModule) -> None:
    batch = next(iter(scenes_data.train_dataloader()))
    q = len(batch["question_tokens"])
    assert batch["images"].shape == (4, 3, 32, 32) and q > 4
    assert batch["image_index"].tolist() == sorted(batch["image_index"].tolist())
    assert set(batch["image_index"].tolist()) == {0, 1, 2, 3}
    assert batch["answer_scores"].shape == (q, len(scenes_data.answers))
    assert torch.allclose(batch["answer_scores"].sum(-1), torch.ones(q))  # 10 agreeing humans: one class, 1.0
    assert {"yes", "no", "one"} <= set(scenes_data.answers)
    assert scenes_data.vocab["answers"] == scenes_data.answers


def test_a_cpu_batch_is_not_walked_again(scenes_data: VQADataModule) -> None:
    batch = next(iter(scenes_data.train_dataloader()))
    assert scenes_data.transfer_batch_to_device(batch, torch.device("cpu"), 0) is batch


def test_a_scene_is_drawn_once_for_all_its_questions(scenes_data: VQADataModule,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from anytoken.tasks.data.synthetic.scenes import Scene

    drawn = []
    render = Scene.render
    monkeypatch.setattr(Scene, "render", lambda scene, size=64: drawn.append(scene) or render(scene, size))
    groups = scenes_data.splits["train"]
    items = groups[0]["items"] + groups[1]["items"]
    assert len(items) > 2 and len(drawn) == 2
    size = groups.dataset.config.image_size
    assert list(items[-1]["image"].getdata()) == list(render(drawn[1], size).getdata())


def test_training_can_keep_a_fixed_subset_of_questions_per_image() -> None:
    data = VQADataModule(num_train=12, num_val=4, num_test=4, num_heldout=0, batch_size=4, image_size=32,
                         bpe_vocab_size=280, train_questions_per_image=2)
    train, test = data.splits["train"], data.splits["test"]
    assert all(len(train[g]["items"]) == 2 for g in range(len(train)))
    assert [i["question"] for i in train[0]["items"]] == [i["question"] for i in train[0]["items"]]
    assert all(len(test[g]["items"]) == len(test.groups[g]) > 2 for g in range(len(test)))
    assert len(next(iter(data.train_dataloader()))["question_tokens"]) == 8
    with pytest.raises(ValueError, match="max_questions"):
        ByImage(data.splits["train"].dataset, max_questions=-1)


def test_soft_scores_follow_the_vqa_rule(scenes_data: VQADataModule) -> None:
    scores = scenes_data.answer_scores(["yes"] * 2 + ["no"] * 8 + [])
    yes, no = scenes_data.answers.index("yes"), scenes_data.answers.index("no")
    assert scores[yes] == pytest.approx(2 / 3) and scores[no] == 1.0 and scores.sum() == pytest.approx(5 / 3)
    assert scenes_data.answer_scores(["2", "two", "Two!"])[scenes_data.answers.index("two")] == 1.0


@pytest.mark.parametrize("head", ["generate", "classify"])
def test_both_heads_train_answer_and_survive_a_release(scenes_data, head: str, tmp_path: Path) -> None:
    task = VQAModule(scenes_data.vocab, head=head, lr=3e-3, **TINY)
    batch = next(iter(scenes_data.train_dataloader()))
    first, last = train_steps(task, batch, 10)
    assert math.isfinite(first) and last < first  # it learns
    model = task.model.eval()
    answers = model.formats["vqa"].answer(model, batch)
    assert len(answers) == len(batch["question_tokens"]) and all(isinstance(a, str) for a in answers)
    if head == "classify":
        assert set(answers) <= set(scenes_data.answers)
    loaded = anytoken.load(task.export(tmp_path / "release"))
    fmt = loaded.task_format("vqa")
    assert fmt.head == head and fmt.answer(loaded, batch) == answers
    single = loaded.ask(batch["images"][:1], ["what color is the circle?"])
    assert len(single) == 1
    with pytest.raises(ValueError, match="image_index"):
        loaded.ask(batch["images"][:1], ["a?", "b?"], image_index=[0, 3])


@pytest.mark.parametrize("head", ["generate", "classify"])
def test_one_row_per_image_gives_the_loss_of_one_row_per_question(scenes_data, head: str) -> None:
    model = VQAModule(scenes_data.vocab, head=head, **TINY).model.eval()
    fmt = model.formats["vqa"]
    batch = next(iter(scenes_data.train_dataloader()))
    order = torch.randperm(len(batch["question_tokens"]))  # questions of an image need not be adjacent
    batch |= {k: batch[k][order] for k in ("image_index", "answer_scores")}
    batch |= {k: [batch[k][i] for i in order] for k in ("question_tokens", "answer_tokens")}
    if head == "generate":
        separate = TaskFormat.loss(fmt, model, batch)  # one row per question
    else:
        separate = _soft_cross_entropy(fmt.class_logits(model, batch), batch["answer_scores"])
    torch.testing.assert_close(fmt.loss(model, batch), separate)
    rows, _, _ = fmt.shared_prefix(model, batch)
    assert rows.input_ids.shape[0] == len(batch["images"])
    assert rows.input_ids.numel() < fmt.rows(model, batch).input_ids.numel()


@pytest.mark.parametrize("head", ["generate", "classify"])
def test_caption_weight_adds_a_captioning_block_per_image(scenes_data, head: str) -> None:
    batch = next(iter(scenes_data.train_dataloader()))
    assert len(batch["caption_tokens"]) == len(batch["images"])  # the scenes have captions
    plain = VQAModule(scenes_data.vocab, head=head, **TINY).model.eval()
    both = VQAModule(scenes_data.vocab, head=head, caption_weight=0.5, **TINY).model.eval()
    both.load_state_dict(plain.state_dict())
    rows, positions, _ = both.formats["vqa"].shared_prefix(both, batch)
    caption_id = both.space.task("caption")
    assert ((rows.input_ids == caption_id).sum(1) == 1).all()
    start = (rows.input_ids[0] == caption_id).nonzero().item()
    assert positions[0, start] == start  # laid out as CaptionFormat's sample: right after the prompt
    captions = [both.image_prompt(n, "caption") + [Tokens("text", c, target=True)]
                for n, c in enumerate(batch["caption_tokens"])]
    seq = build_sequences(captions, both.space, max_length=96, mask=both.mask)
    caption_loss = both.lm_loss(seq, both.hidden_states(seq, both.embed(seq, batch)))  # CaptionFormat's loss
    plain_loss = plain.formats["vqa"].loss(plain, batch)
    torch.testing.assert_close(both.formats["vqa"].loss(both, batch), plain_loss + 0.5 * caption_loss,
                               rtol=1e-4, atol=1e-4)
    no_captions = {k: v for k, v in batch.items() if k != "caption_tokens"}  # e.g. VQA v2
    torch.testing.assert_close(both.formats["vqa"].loss(both, no_captions), plain_loss)


def test_classify_needs_answers_and_a_vqa_tag(scenes_data: VQADataModule) -> None:
    vocab = dict(scenes_data.vocab, answers=[])
    with pytest.raises(ValueError, match="answers"):
        VQAModule(vocab, head="classify", **TINY)
    with pytest.raises(ValueError, match="head must be"):
        VQAModule(scenes_data.vocab, head="extract", **TINY)
    with pytest.raises(ValueError, match="image_encoder"):
        VQAModule(scenes_data.vocab, backbone=TINY["backbone"])


def _fit_args(config: str, root: Path, *extra: str) -> list[str]:
    callbacks = json.dumps([
        {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
         "init_args": {"dirpath": str(root / "checkpoints"), "save_last": True, "save_top_k": 0}},
        {"class_path": "anytoken.tasks.callbacks.ExportRelease",
         "init_args": {"dirpath": str(root / "release")}},
    ])
    return [
        "--config", config, "--trainer.max_steps", "2", "--trainer.val_check_interval", "2",
        "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1",
        "--trainer.accelerator", "cpu",
        "--trainer.precision", "32-true", "--trainer.default_root_dir", str(root),
        "--trainer.logger.init_args.save_dir", str(root), f"--trainer.callbacks={callbacks}",
        "--model.init_args.backbone", json.dumps(TINY["backbone"]),
        "--model.init_args.image_encoder.image_size", "32",  # the shipped encoder, at 32 px
        "--data.init_args.image_size", "32", "--data.init_args.batch_size", "2",
        "--data.init_args.num_workers", "0",
        *extra,
    ]


SCENES = [
    "--data.init_args.num_train", "30", "--data.init_args.num_val", "2", "--data.init_args.num_test", "2",
    "--data.init_args.num_heldout", "2", "--data.init_args.bpe_vocab_size", "280",
]


@pytest.mark.parametrize("config", ["configs/vqa_scenes.yaml", "configs/vqa_scenes_classify.yaml"])
def test_scenes_configs_fit_and_test(
    config: str, tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    main(["fit", *_fit_args(config, tmp_path, *SCENES)])
    assert (tmp_path / "release" / "config.json").is_file()
    last = str(tmp_path / "checkpoints" / "last.ckpt")
    main(["test", *_fit_args(config, tmp_path, *SCENES), "--ckpt_path", last])
    out = "".join(capsys.readouterr()) + caplog.text  # the report is logged: stderr or log records
    assert "[test] vqa: acc " in out and "[heldout] vqa: acc " in out and "acc_yes_no" in out
    image = tmp_path / "scene.png"
    make_scenes("test", 1)[0].render(64).save(image)
    main(["vqa", str(image), "how many objects are there?", "--ckpt", str(tmp_path / "release")])
    assert capsys.readouterr().out.strip()


def test_vqa_v2_config_fits_and_tests_on_the_fixture(vqa_v2, tmp_path: Path, capsys, caplog) -> None:
    paths = ["--data.init_args.vqa_train", json.dumps(list(vqa_v2["train"])),
             "--data.init_args.vqa_val", json.dumps(list(vqa_v2["val"])),
             "--data.init_args.text_tokenizer", "bpe", "--data.init_args.bpe_vocab_size", "280",
             # the ViT at 224 px is for GPUs: a tiny CNN here (every field, so none of the ViT's remains)
             "--model.init_args.image_encoder", json.dumps(TINY["image_encoder"] | {
                 "name": "", "pretrained_path": None, "frozen": False, "model_kwargs": {}})]
    main(["fit", *_fit_args("configs/vqa_v2.yaml", tmp_path, *paths)])
    main(["test", *_fit_args("configs/vqa_v2.yaml", tmp_path, *paths),
          "--ckpt_path", str(tmp_path / "checkpoints" / "last.ckpt")])
    out = "".join(capsys.readouterr()) + caplog.text
    assert "[test] vqa: acc " in out and "acc_number" in out and "acc_other" in out


def test_vqa_cli_explains_bad_input(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="anytoken vqa: no checkpoint"):
        main(["vqa", str(tmp_path / "x.png"), "what?", "--ckpt", str(tmp_path / "nothing")])


@pytest.mark.parametrize("head", ["generate", "classify"])
def test_question_first_layout_lets_the_image_tokens_see_the_question(scenes_data, head: str) -> None:
    task = VQAModule(scenes_data.vocab, head=head, layout="question_first", lr=3e-3, **TINY)
    model, fmt = task.model, task.model.formats["vqa"]
    batch = next(iter(scenes_data.train_dataloader()))
    seq = fmt.rows(model, batch, targets=head == "generate")
    ids = seq.input_ids[0].tolist()
    assert ids.index(model.space.task("vqa")) < seq.embed_mask[0].nonzero()[0].item()  # question, then image
    first, last = train_steps(task, batch, 10)
    assert last < first
    assert len(fmt.answer(model.eval(), batch)) == len(batch["question_tokens"])
    with pytest.raises(ValueError, match="layout"):
        VQAModule(scenes_data.vocab, layout="question_first", caption_weight=0.5, **TINY)
