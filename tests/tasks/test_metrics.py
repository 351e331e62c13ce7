"""Caption metrics through pycocoevalcap (needs Java) and the official VQA accuracy."""

from __future__ import annotations

import pytest

from anytoken.tasks.metrics import text as metrics
from anytoken.tasks.metrics.text import caption_metrics, normalize_answer, vqa_accuracy, vqa_scores

REFERENCES = {
    "1": [
        "a large red circle at the top left and a small blue square in the center",
        "a red circle and a square",
    ],
    "2": ["a small green triangle on the right"],
    "3": ["a large white diamond at the bottom left and a small yellow square at the top"],
    "4": ["a small purple circle in the center", "one purple circle in the middle of the picture"],
}


def test_identical_predictions_score_high_and_others_lower() -> None:
    exact = caption_metrics({k: v[0] for k, v in REFERENCES.items()}, REFERENCES)
    assert set(exact) == {"bleu4", "cider_d", "exact_match"}
    assert exact["exact_match"] == 1.0
    assert exact["bleu4"] > 0.9 and exact["cider_d"] > 3.0
    wrong = {"1": "a small green square at the bottom", "2": "two blue circles", "3": "a dog", "4": ""}
    other = caption_metrics(wrong, REFERENCES)
    assert other["exact_match"] == 0.0
    assert other["bleu4"] < 0.1 and other["cider_d"] < 0.5


def test_empty_and_messy_predictions_keep_their_alignment() -> None:
    clean = {k: v[0] for k, v in REFERENCES.items()}
    messy = dict(
        clean, **{"1": "  A large red circle at the top left\rand a small blue square\nin the center. "}
    )
    assert caption_metrics(messy, REFERENCES) == pytest.approx(caption_metrics(clean, REFERENCES))
    empty = caption_metrics(dict(clean, **{"2": "", "3": "..."}), REFERENCES)  # "..." tokenizes to nothing
    assert empty["exact_match"] == 0.5 and 0.0 < empty["cider_d"]


def test_caption_metrics_input_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="empty input"):
        caption_metrics({}, {})
    with pytest.raises(ValueError, match=r"same keys; no prediction for \['2'\], no references for \['9'\]"):
        caption_metrics({"1": "a", "9": "b"}, {"1": ["a"], "2": ["b"]})
    with pytest.raises(ValueError, match="references for '1' must be a non-empty list of str"):
        caption_metrics({"1": "a"}, {"1": []})
    with pytest.raises(ValueError, match="references for '1'"):
        caption_metrics({"1": "a"}, {"1": "a"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="prediction for '1' must be a str"):
        caption_metrics({"1": None}, {"1": ["a"]})  # type: ignore[dict-item]
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="need Java"):
        caption_metrics({"1": "a"}, {"1": ["a"]})
    with pytest.warns(UserWarning, match="need Java.*exact_match alone"):
        scores = caption_metrics({"1": "a.", "2": "b"}, {"1": ["a"], "2": ["c"]}, require_java=False)
    assert scores == {"exact_match": 0.5}


@pytest.mark.parametrize(
    ("matching", "expected"),
    [(10, 1.0), (4, 1.0), (3, 0.9), (2, 0.6), (1, 0.3), (0, 0.0)],
)
def test_vqa_accuracy_counts_humans(matching: int, expected: float) -> None:
    answers = ["red"] * matching + ["blue"] * (10 - matching)
    assert vqa_accuracy("red", answers) == pytest.approx(expected)


def _official_leave_one_out(prediction: str, answers: list[str]) -> float:
    """The official loop, written out: each human is left out once and the rest vote."""
    scores = []
    for left_out in range(len(answers)):
        others = answers[:left_out] + answers[left_out + 1 :]
        scores.append(min(1.0, sum(a == prediction for a in others) / 3))
    return sum(scores) / len(scores)


def test_vqa_accuracy_equals_the_official_loop() -> None:
    answers = ["2", "2", "two", "3", "2", "many", "3", "2", "3", "1"]
    for prediction in ["2", "3", "1", "many", "4"]:
        normalized = [normalize_answer(a) for a in answers]
        assert vqa_accuracy(prediction, answers) == pytest.approx(
            _official_leave_one_out(prediction, normalized)
        )


@pytest.mark.parametrize(
    ("prediction", "answer"),
    [
        ("Two", "2"),
        ("2", "two"),
        ("none", "0"),
        ("The red one.", "red 1"),
        ("yes!", "yes"),
        ("dont", "don't"),
        ("black/white", "black white"),
        ("1,000", "1000"),
        ("an apple\n", "apple"),
    ],
)
def test_vqa_answers_are_normalised(prediction: str, answer: str) -> None:
    assert vqa_accuracy(prediction, [answer] * 10) == 1.0


def test_normalize_answer_follows_the_official_rules() -> None:
    assert normalize_answer("Two dogs!") == "2 dogs"
    assert normalize_answer("3.5") == "3.5"  # a period before a digit stays
    assert normalize_answer("end.") == "end"
    assert normalize_answer("left - right") == "left right"  # a mark beside a space is dropped
    assert normalize_answer("x-ray") == "x ray"  # otherwise it becomes a space
    assert normalize_answer("couldnt've") == normalize_answer("couldn'tve") == "couldn't've"
    assert normalize_answer("somebody'd") == "somebodyd"  # as the official table has it


def test_vqa_accuracy_errors() -> None:
    with pytest.raises(ValueError, match="at least 2 human answers"):
        vqa_accuracy("red", ["red"])
    with pytest.raises(ValueError, match="at least 2 human answers"):
        vqa_accuracy("red", "red")  # type: ignore[arg-type]


def test_vqa_scores_overall_and_per_type() -> None:
    scores = vqa_scores(
        ["red", "2", "no", "circle"],
        [["red"] * 10, ["two"] * 10, ["yes"] * 10, ["circle"] * 3 + ["square"] * 7],
        ["color", "count", "yes/no", "shape"],
    )
    assert scores == pytest.approx(
        {"overall": 2.9 / 4, "color": 1.0, "count": 1.0, "yes/no": 0.0, "shape": 0.9}
    )
    with pytest.raises(ValueError, match="same length"):
        vqa_scores(["a"], [["a"] * 10, ["b"] * 10], ["color"])
    with pytest.raises(ValueError, match="at least one prediction"):
        vqa_scores([], [], [])
    with pytest.raises(ValueError, match="'overall' is reserved"):
        vqa_scores(["a"], [["a"] * 10], ["overall"])
