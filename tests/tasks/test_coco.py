"""COCO captions loader and the shared image loader, on small fixtures in the exact COCO format."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from anytoken.tasks.data.formats.coco import CocoCaptionsDataset
from anytoken.tokenizers.image_io import load_image

CAPTIONS = {
    1: ["A red square on a table.", "a red box"],
    2: ["Two dogs play in the park.  ", "dogs playing", "a pair of dogs outside"],
    3: ["a gray photo"],
}


def _write_images(folder: Path) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 255, (20, 10, 3), dtype=np.uint8)).save(folder / "b.jpg", quality=90)
    Image.new("L", (1, 1), 128).save(folder / "c.png")
    Image.new("RGB", (4, 4), (9, 9, 9)).save(folder / "unused.png")


@pytest.fixture
def coco(tmp_path: Path) -> tuple[dict[str, Any], Path]:
    """A COCO captions JSON (as a dict) and its images folder; image 4 has no caption."""
    images_dir = tmp_path / "images"
    images_dir.mkdir()
    _write_images(images_dir)
    images = [
        {"id": 1, "file_name": "a.png", "width": 16, "height": 12},
        {"id": 2, "file_name": "b.jpg", "width": 10, "height": 20},
        {"id": 3, "file_name": "c.png", "width": 1, "height": 1},
        {"id": 4, "file_name": "unused.png", "width": 4, "height": 4},
    ]
    annotations = [
        {"image_id": image_id, "id": 100 * image_id + i, "caption": caption}
        for image_id, captions in CAPTIONS.items()
        for i, caption in enumerate(captions)
    ]
    annotations.reverse()  # references keep file order, whatever it is
    data = {"info": {}, "licenses": [], "images": images, "annotations": annotations}
    return data, images_dir


def _dump(data: Any, path: Path) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_round_trip(coco: tuple[dict[str, Any], Path], tmp_path: Path) -> None:
    data, images_dir = coco
    dataset = CocoCaptionsDataset(_dump(data, tmp_path / "captions.json"), images_dir)
    assert len(dataset) == 3  # image 4 has no caption
    items = [dataset[i] for i in range(len(dataset))]
    assert [item["image_id"] for item in items] == ["1", "2", "3"]
    for item in items:
        expected = [c.strip() for c in reversed(CAPTIONS[int(item["image_id"])])]
        assert item["references"] == expected and item["caption"] == expected[0]
        assert item["image"].mode == "RGB"
    assert [item["image"].size for item in items] == [(16, 12), (10, 20), (1, 1)]
    assert dataset.references == {str(k): [c.strip() for c in reversed(v)] for k, v in CAPTIONS.items()}
    assert np.asarray(items[2]["image"]).tolist() == [[[128, 128, 128]]]


def test_one_item_per_caption(coco: tuple[dict[str, Any], Path], tmp_path: Path) -> None:
    data, images_dir = coco
    dataset = CocoCaptionsDataset(
        str(_dump(data, tmp_path / "c.json")), str(images_dir), one_item_per_caption=True
    )
    assert len(dataset) == sum(len(v) for v in CAPTIONS.values())
    pairs = [(dataset[i]["image_id"], dataset[i]["caption"]) for i in range(len(dataset))]
    assert sorted(pairs) == sorted((str(k), c.strip()) for k, v in CAPTIONS.items() for c in v)
    assert all(dataset[i]["caption"] in dataset[i]["references"] for i in range(len(dataset)))


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """An edit of the JSON: ``path`` like "images.0.file_name"; value None deletes the key."""

    def edit(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = data
        for key in parents:
            target = target[int(key)] if key.isdigit() else target[key]
        if value is None:
            del target[int(last) if last.isdigit() else last]
        else:
            target[int(last) if last.isdigit() else last] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set("images", None), "missing key 'images'"),
        (_set("annotations", None), "missing key 'annotations'"),
        (_set("annotations", []), "'annotations' is empty"),
        (_set("images", {}), "'images' must be a list"),
        (_set("images.0.file_name", None), r"images\[0\] is missing key 'file_name'"),
        (_set("images.1.id", None), r"images\[1\] is missing key 'id'"),
        (_set("images.1.id", 1), r"images\[1\] repeats image id 1"),
        (_set("annotations.0.caption", None), r"annotations\[0\] is missing key 'caption'"),
        (_set("annotations.0.image_id", None), r"annotations\[0\] is missing key 'image_id'"),
        (
            _set("annotations.2.image_id", 99),
            r"annotations\[2\] refers to image_id 99, which is not in 'images'",
        ),
        (_set("annotations.1.caption", "  "), r"annotations\[1\] has an empty"),
        (_set("annotations.1", "a caption"), r"annotations\[1\] must be a JSON object"),
        (_set("images.0.file_name", "gone.png"), r"1 image file\(s\) listed in .* are not in .*gone.png"),
    ],
)
def test_bad_annotations_raise(
    coco: tuple[dict[str, Any], Path], tmp_path: Path, edit: Callable[[dict[str, Any]], None], message: str
) -> None:
    data, images_dir = coco
    edit(data)
    with pytest.raises(ValueError, match=message):
        CocoCaptionsDataset(_dump(data, tmp_path / "bad.json"), images_dir)


def test_bad_paths_raise(coco: tuple[dict[str, Any], Path], tmp_path: Path) -> None:
    data, images_dir = coco
    good = _dump(data, tmp_path / "good.json")
    with pytest.raises(ValueError, match="annotations file not found"):
        CocoCaptionsDataset(tmp_path / "nope.json", images_dir)
    with pytest.raises(ValueError, match="images_dir is not a directory"):
        CocoCaptionsDataset(good, tmp_path / "nope")
    (tmp_path / "broken.json").write_text('{"images": [')
    with pytest.raises(ValueError, match="broken.json is not valid JSON"):
        CocoCaptionsDataset(tmp_path / "broken.json", images_dir)
    with pytest.raises(ValueError, match="expected a JSON object"):
        CocoCaptionsDataset(_dump([data], tmp_path / "list.json"), images_dir)


def test_load_image_converts_modes(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (2, 1), (255, 0, 0, 255))
    rgba.putpixel((1, 0), (0, 0, 255, 0))  # fully transparent pixel -> the white background
    rgba.save(tmp_path / "rgba.png")
    palette = Image.new("P", (3, 3), 1)
    palette.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)
    palette.save(tmp_path / "palette.png")
    palette.save(tmp_path / "keyed.png", transparency=1)
    Image.fromarray(np.full((2, 2), 65535, dtype=np.uint16)).save(tmp_path / "wide.png")
    Image.new("1", (5, 7), 1).save(tmp_path / "bilevel.png")
    expected = {
        "rgba.png": [[[255, 0, 0], [255, 255, 255]]],
        "palette.png": [[[0, 200, 0]] * 3] * 3,
        "keyed.png": [[[255, 255, 255]] * 3] * 3,
        "wide.png": [[[255, 255, 255]] * 2] * 2,  # 16 bits scaled, not clipped
        "bilevel.png": [[[255, 255, 255]] * 5] * 7,
    }
    for name, pixels in expected.items():
        image = load_image(tmp_path / name)
        assert image.mode == "RGB", name
        assert np.asarray(image).tolist() == pixels, name
    half = Image.fromarray(np.full((1, 1), 32768, dtype=np.uint16))
    half.save(tmp_path / "half.png")
    assert np.asarray(load_image(tmp_path / "half.png")).tolist() == [[[128, 128, 128]]]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("keep", [0.3, 0.9])
def test_load_image_detects_truncation(tmp_path: Path, fmt: str, keep: float) -> None:
    path = tmp_path / f"img.{fmt.lower()}"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path, fmt)
    data = path.read_bytes()
    assert load_image(path).size == (32, 32)
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ValueError, match=f"truncated or corrupt image file: .*img.{fmt.lower()}"):
        load_image(path)


def test_load_image_detects_png_without_end_chunk_and_bad_checksum(tmp_path: Path) -> None:
    path = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[:-12])  # the IEND chunk is gone, pixels are intact
    with pytest.raises(ValueError, match="truncated or corrupt image file"):
        load_image(path)
    corrupt = bytearray(data)
    corrupt[len(data) // 2] ^= 0xFF  # inside the pixel data
    path.write_bytes(bytes(corrupt))
    with pytest.raises(ValueError, match="truncated or corrupt image file"):
        load_image(path)


def test_load_image_rejects_missing_and_non_image_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="image file not found: .*missing.png"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="image file not found"):
        load_image(tmp_path)  # a folder
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(ValueError, match="not a readable image file: .*notes.jpg"):
        load_image(tmp_path / "notes.jpg")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match="not a readable image file: .*empty.png"):
        load_image(tmp_path / "empty.png")
