"""The procedural scenes: determinism, held-out split, captions, questions and rendering."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from anytoken.tasks.data.synthetic.scenes import (
    COLORS,
    HELDOUT_PAIRS,
    POSITIONS,
    SHAPES,
    TRAIN_PAIRS,
    Scene,
    SceneObject,
    ScenesCaptionDataset,
    ScenesConfig,
    ScenesVQADataset,
    content_split,
    make_scenes,
)

NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _pairs(scene: Scene) -> set[tuple[str, str]]:
    return {(obj.color, obj.shape) for obj in scene.objects}


def test_make_scenes_is_deterministic_by_seed_and_split() -> None:
    config = ScenesConfig(max_objects=3)
    first = make_scenes("train", 40, config)
    assert first == make_scenes("train", 40, config)
    assert [s.render().tobytes() for s in first[:5]] == [s.render().tobytes() for s in first[:5]]
    assert first[:10] == make_scenes("train", 10, config)  # a prefix does not depend on num
    assert first != make_scenes("train", 40, ScenesConfig(max_objects=3, seed=1))
    assert first != make_scenes("val", 40, config)


def test_test_and_val_contents_never_appear_in_train() -> None:
    config = ScenesConfig(min_objects=1, max_objects=2)
    captions = {
        split: {s.caption() for s in make_scenes(split, n, config)}
        for split, n in [("train", 3000), ("val", 300), ("test", 300)]
    }
    assert not captions["train"] & captions["test"]  # overlap fraction 0, by construction
    assert not captions["train"] & captions["val"]
    assert not captions["val"] & captions["test"]
    # Even with a tiny content space (432 one-object scenes) every split still fills up.
    one = ScenesConfig(min_objects=1, max_objects=1)
    for split in ("train", "val", "test"):
        assert all(content_split(s) == split for s in make_scenes(split, 50, one))


def test_heldout_pairs_are_a_quarter_and_keep_every_attribute_in_training() -> None:
    assert len(HELDOUT_PAIRS) == len(COLORS) * len(SHAPES) // 4
    assert Counter(color for color, _ in HELDOUT_PAIRS) == Counter(list(COLORS))  # each colour once
    assert set(Counter(shape for _, shape in HELDOUT_PAIRS).values()) == {2}  # each shape twice
    assert {c for c, _ in TRAIN_PAIRS} == set(COLORS) and {s for _, s in TRAIN_PAIRS} == set(SHAPES)
    assert not HELDOUT_PAIRS & set(TRAIN_PAIRS)


def test_heldout_pairs_never_in_train_val_test_and_in_every_heldout_scene() -> None:
    config = ScenesConfig(max_objects=4)
    for split in ("train", "val", "test"):
        for scene in make_scenes(split, 300, config):
            assert not _pairs(scene) & HELDOUT_PAIRS
            for qa in scene.questions():  # not even as a "no" question
                assert not any(f"{c} {s}" in qa.question for c, s in HELDOUT_PAIRS)
    heldout = make_scenes("heldout", 300, config)
    assert all(_pairs(scene) & HELDOUT_PAIRS for scene in heldout)
    assert set().union(*(_pairs(s) & HELDOUT_PAIRS for s in heldout)) == HELDOUT_PAIRS


def test_heldout_val_chooses_settings_on_other_contents_than_heldout_scores() -> None:
    config = ScenesConfig(min_objects=1, max_objects=1)  # 144 held-out contents: overlap would show
    heldout, chooser = make_scenes("heldout", 400, config), make_scenes("heldout_val", 100, config)
    assert all(_pairs(scene) & HELDOUT_PAIRS for scene in chooser)
    assert not {s.caption() for s in heldout} & {s.caption() for s in chooser}
    assert {content_split(s) for s in chooser} == {"val"} and "val" not in {content_split(s) for s in heldout}


def test_scenes_respect_object_counts_and_distinct_cells() -> None:
    scenes = make_scenes("train", 200, ScenesConfig(min_objects=2, max_objects=4))
    assert {len(s.objects) for s in scenes} == {2, 3, 4}
    for scene in scenes:
        cells = [obj.cell for obj in scene.objects]
        assert len(set(cells)) == len(cells)
        assert cells == sorted(cells, key=POSITIONS.index)


def test_caption_wording() -> None:
    one = Scene((SceneObject("triangle", "green", "small", "right"),))
    assert one.caption() == "a small green triangle on the right"
    two = Scene(
        (SceneObject("square", "blue", "small", "center"), SceneObject("circle", "red", "large", "top left"))
    )
    assert two.caption() == "a large red circle at the top left and a small blue square in the center"
    three = Scene(two.objects + (SceneObject("diamond", "orange", "large", "bottom"),))
    assert three.caption() == (
        "a large red circle at the top left, a small blue square in the center"
        " and a large orange diamond at the bottom"
    )


def test_caption_matches_objects() -> None:
    for scene in make_scenes("test", 100, ScenesConfig(max_objects=3)):
        phrases = scene.caption().replace(" and ", ", ").split(", ")
        assert phrases == [obj.describe() for obj in scene.objects]
        for phrase, obj in zip(phrases, scene.objects):
            assert phrase.split()[1:4] == [obj.size, obj.color, obj.shape] and phrase.endswith(obj.cell)


def _expected_answer(scene: Scene, qa_type: str, words: list[str]) -> str:
    objs = scene.objects
    if qa_type == "color":  # what color is the SHAPE?
        (match,) = [o for o in objs if o.shape == words[-1]]
        return match.color
    if qa_type == "shape":  # what shape is the COLOR object?
        (match,) = [o for o in objs if o.color == words[-2]]
        return match.shape
    if qa_type == "count":  # how many objects / SHAPEs are there?
        noun = words[2]
        return NUMBER_WORDS[len(objs) if noun == "objects" else sum(o.shape + "s" == noun for o in objs)]
    if qa_type == "position":  # where is the COLOR SHAPE?
        (match,) = [o for o in objs if (o.color, o.shape) == (words[-2], words[-1])]
        return match.cell
    return "yes" if (words[-2], words[-1]) in _pairs(scene) else "no"  # is there a/an COLOR SHAPE?


def test_question_answers_are_correct_and_yes_no_balanced() -> None:
    types: Counter[str] = Counter()
    for scene in make_scenes("train", 300, ScenesConfig(max_objects=4)) + make_scenes("heldout", 50):
        qas = scene.questions()
        assert qas == scene.questions()  # deterministic
        answers = Counter(qa.answer for qa in qas if qa.question_type == "yes/no")
        assert answers["yes"] == answers["no"] == len(_pairs(scene))
        for qa in qas:
            words = qa.question.rstrip("?").split()
            assert qa.answer == _expected_answer(scene, qa.question_type, words), qa
        types.update(qa.question_type for qa in qas)
    assert set(types) == {"color", "shape", "count", "position", "yes/no"}
    assert "is there an orange" in " ".join(
        qa.question for s in make_scenes("train", 100) for qa in s.questions()
    )


def _cell_pixels(image: np.ndarray, cell: str) -> np.ndarray:
    row, col = divmod(POSITIONS.index(cell), 3)
    side = image.shape[0] // 3
    return image[row * side : (row + 1) * side, col * side : (col + 1) * side].reshape(-1, 3)


@pytest.mark.parametrize("image_size", [64, 96])
def test_render_matches_the_scene(image_size: int) -> None:
    small_areas, large_areas = [], []
    for scene in make_scenes("train", 150, ScenesConfig(max_objects=4, image_size=image_size)):
        image = scene.render(image_size)
        assert image.size == (image_size, image_size) and image.mode == "RGB"
        pixels = np.asarray(image)
        objects = {obj.cell: obj for obj in scene.objects}
        assert pixels.reshape(-1, 3).any(axis=1).sum() == sum(  # nothing drawn across cell borders
            _cell_pixels(pixels, cell).any(axis=1).sum() for cell in POSITIONS
        )
        drawn = [cell for cell in POSITIONS if _cell_pixels(pixels, cell).any()]
        assert drawn == list(objects)  # so the count answer is what the image shows
        for cell, obj in objects.items():
            lit = _cell_pixels(pixels, cell)
            lit = lit[lit.any(axis=1)]
            assert {tuple(p) for p in lit} == {COLORS[obj.color]}
            (small_areas if obj.size == "small" else large_areas).append(len(lit))
    assert max(small_areas) * 1.5 < min(large_areas)  # sizes stay distinct whatever the shape and jitter


def test_render_is_reproducible_and_jittered() -> None:
    obj = SceneObject("circle", "white", "small", "center")
    assert Scene((obj,), seed=3).render().tobytes() == Scene((obj,), seed=3).render().tobytes()
    renders = {Scene((obj,), seed=seed).render().tobytes() for seed in range(10)}
    assert len(renders) > 5
    with pytest.raises(ValueError, match="image_size"):
        Scene((obj,)).render(8)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_size": 16}, "image_size"),
        ({"image_size": 64.0}, "image_size must be an int"),
        ({"min_objects": 0}, "min_objects"),
        ({"min_objects": 3, "max_objects": 2}, "min_objects <= max_objects"),
        ({"max_objects": 10}, "max_objects <= 9"),
        ({"seed": "0"}, "seed must be an int"),
    ],
)
def test_config_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScenesConfig(**kwargs)


def test_bad_scenes_and_arguments_raise() -> None:
    with pytest.raises(ValueError, match="unknown color 'pink'"):
        SceneObject("circle", "pink", "small", "top")
    with pytest.raises(ValueError, match="unknown cell"):
        SceneObject("circle", "red", "small", "middle")
    obj = SceneObject("circle", "red", "small", "top")
    with pytest.raises(ValueError, match="distinct cells"):
        Scene((obj, SceneObject("square", "blue", "large", "top")))
    with pytest.raises(ValueError, match="non-empty"):
        Scene(())
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        make_scenes("dev", 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num"):
        make_scenes("train", -1)


def test_caption_dataset_items() -> None:
    dataset = ScenesCaptionDataset("val", 5, ScenesConfig(image_size=48))
    assert len(dataset) == 5
    item = dataset[2]
    assert set(item) == {"image", "caption", "references", "image_id"}
    assert item["image"].size == (48, 48) and item["image"].mode == "RGB"
    assert item["references"] == [item["caption"]] == [dataset.scenes[2].caption()]
    assert item["image_id"] == "scenes-val-2"


def test_vqa_dataset_items() -> None:
    config = ScenesConfig(max_objects=3)
    dataset = ScenesVQADataset("test", 6, config)
    assert len(dataset) == sum(len(scene.questions()) for scene in make_scenes("test", 6, config))
    captions = ScenesCaptionDataset("test", 6, config)
    for index in range(len(dataset)):
        item = dataset[index]
        assert set(item) == {"image", "question", "answer", "answers", "question_type", "image_id"}
        assert item["answers"] == [item["answer"]] * 10
        scene_index = int(item["image_id"].rsplit("-", 1)[1])
        assert item["image"].tobytes() == captions[scene_index]["image"].tobytes()
