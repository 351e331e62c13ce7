"""The VQA v2 format, read from user-given paths and validated when the dataset is built: a questions JSON
``{"data_subtype": "val2014", "questions": [{"image_id", "question", "question_id"}]}``, an annotations
JSON ``{"annotations": [{"question_id", "question_type", "answer_type", "multiple_choice_answer",
"answers": [{"answer", ...}] * 10, ...}]}`` and the COCO image folder (``COCO_val2014_000000458752.jpg``,
or the 2017 naming ``000000458752.jpg``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from torch.utils.data import Dataset

from anytoken.tasks.data.formats.coco import read_json, require
from anytoken.tokenizers.image_io import load_image


class VQAv2Dataset(Dataset):
    """VQA v2 questions with their 10 human answers: items ``{"image", "question", "answer", "answers",
    "question_type", "image_id", "question_id"}`` as ``ScenesVQADataset`` gives (plus ``question_id``).

    ``answer`` is the ``multiple_choice_answer`` (the most common human answer); ``question_type`` is the
    annotation's ``answer_type`` ("yes/no", "number", "other": the breakdown papers report) or, with
    ``question_type_key="question_type"``, its question type ("what color is the", ... 65 of them).

    Args:
        questions: the questions JSON file.
        annotations: the annotations JSON file.
        images_dir: the COCO image folder.
        question_type_key: which annotation field groups the per-type accuracy.
    """

    def __init__(self, questions: str | Path, annotations: str | Path, images_dir: str | Path,
                 question_type_key: Literal["answer_type", "question_type"] = "answer_type") -> None:
        if question_type_key not in ("answer_type", "question_type"):
            raise ValueError(
                f"question_type_key must be 'answer_type' or 'question_type', got {question_type_key!r}"
            )
        self.images_dir = Path(images_dir)
        if not self.images_dir.is_dir():
            raise ValueError(f"VQA images_dir is not a directory: {self.images_dir}")
        qdata = _read_json(Path(questions), "questions")
        adata = _read_json(Path(annotations), "annotations")
        subtype = str(qdata.get("data_subtype", ""))
        by_id = _index_annotations(adata["annotations"], Path(annotations), question_type_key)
        self.records: list[dict[str, Any]] = []
        for i, entry in enumerate(qdata["questions"]):
            entry = require(entry, ("image_id", "question", "question_id"), f"{questions}: questions[{i}]")
            if entry["question_id"] not in by_id:
                raise ValueError(f"{annotations}: no annotation for question_id {entry['question_id']!r}")
            if not isinstance(entry["question"], str) or not entry["question"].strip():
                raise ValueError(f"{questions}: questions[{i}] has an empty or non-string question")
            record = {"question": entry["question"].strip(), "image_id": str(entry["image_id"])}
            self.records.append(record | by_id[entry["question_id"]] | {"question_id": entry["question_id"]})
        if not self.records:
            raise ValueError(f"{questions}: 'questions' is empty")
        ids = sorted({r["image_id"] for r in self.records})
        self.files = {image_id: _image_file(self.images_dir, int(image_id), subtype) for image_id in ids}
        missing = [image_id for image_id, path in self.files.items() if path is None]
        if missing:
            raise ValueError(
                f"{len(missing)} image(s) of {questions} are not in {self.images_dir} (looked for "
                f"COCO_{subtype}_<id:012d>.jpg and <id:012d>.jpg), e.g. image ids {missing[:3]}"
            )
        self._load = lru_cache(maxsize=16)(load_image)  # the questions of one image come together

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        return {"image": self._load(self.files[record["image_id"]])} | record


def _read_json(path: Path, key: str) -> dict[str, Any]:
    data = read_json(path, f"VQA {key}")
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise ValueError(f"{path}: expected a JSON object whose {key!r} is a list")
    return data


def _index_annotations(annotations: list[Any], path: Path, type_key: str) -> dict[Any, dict[str, Any]]:
    """question_id -> {"answer", "answers", "question_type"}."""
    out: dict[Any, dict[str, Any]] = {}
    keys = ("question_id", "multiple_choice_answer", "answers", type_key)
    for i, entry in enumerate(annotations):
        entry = require(entry, keys, f"{path}: annotations[{i}]")
        answers = entry["answers"]
        if not isinstance(answers, list) or len(answers) < 2:
            raise ValueError(f"{path}: annotations[{i}] needs a list of at least 2 human answers")
        texts = [require(a, ("answer",), f"{path}: annotations[{i}].answers[{j}]")["answer"]
                 for j, a in enumerate(answers)]
        out[entry["question_id"]] = {
            "answer": str(entry["multiple_choice_answer"]),
            "answers": [str(t) for t in texts],
            "question_type": str(entry[type_key]),
        }
    return out


def _image_file(images_dir: Path, image_id: int, subtype: str) -> Path | None:
    for name in (f"COCO_{subtype}_{image_id:012d}.jpg", f"{image_id:012d}.jpg"):
        if (images_dir / name).is_file():
            return images_dir / name
    return None
