"""Where a scenes captioner goes wrong on unseen (colour, shape) pairs: per object, not per caption.

Each scene of a split is captioned greedily; the caption's object phrases are matched to the scene's objects
in order, and every object counts as right or wrong in colour, shape, size and cell. For the objects of a
held-out pair it also counts how often a wrong shape is one the training scenes show with that colour (the
language prior's answer) rather than another. Choose settings on ``heldout_val``; read ``heldout`` once.

    python benchmarks/caption_attributes.py runs/caption_scenes/release [--split heldout_val] [--num 256]

Prints a table and writes JSON (``--json``, default ``benchmarks/results/caption_attributes.json``).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import torch

import anytoken
from anytoken.atomic import atomic_path
from anytoken.tasks.data.synthetic.scenes import (
    COLORS,
    HELDOUT_PAIRS,
    POSITIONS,
    SHAPES,
    SIZES,
    TRAIN_PAIRS,
    Scene,
    ScenesConfig,
    make_scenes,
)
from anytoken.tokenizers.image_io import image_to_tensor

PHRASE = re.compile(rf"(?:a|an) ({'|'.join(SIZES)}) ({'|'.join(COLORS)}) ({'|'.join(SHAPES)}) (?:on|in|at) "
                    rf"the ({'|'.join(sorted(POSITIONS, key=len, reverse=True))})")
ATTRIBUTES = ("size", "color", "shape", "cell")


def object_rows(scene: Scene, caption: str) -> list[dict[str, Any]]:
    """One row per object of ``scene``: which of its attributes the caption's phrase in its place names."""
    said = PHRASE.findall(caption)
    rows = []
    for i, obj in enumerate(scene.objects):
        phrase = dict(zip(ATTRIBUTES, said[i])) if i < len(said) else {}
        row = {a: phrase.get(a) == getattr(obj, a) for a in ATTRIBUTES}
        row["unseen"] = (obj.color, obj.shape) in HELDOUT_PAIRS
        row["prior_shape"] = (obj.color, phrase.get("shape")) in TRAIN_PAIRS and not row["shape"]
        rows.append(row)
    return rows


def measure(release: str, split: str, num: int, batch: int = 128) -> dict[str, Any]:
    """Exact match and per-attribute accuracy of ``release``'s captions of ``num`` scenes of ``split``."""
    model = anytoken.load(release)
    size = model.image_encoder.config.image_size
    scenes = make_scenes(split, num, ScenesConfig(image_size=size))
    captions: list[str] = []
    for start in range(0, num, batch):
        images = torch.stack([image_to_tensor(s.render(size), size) for s in scenes[start : start + batch]])
        captions += model.formats["caption"].caption(model, images)
    rows = [r for scene, caption in zip(scenes, captions) for r in object_rows(scene, caption)]
    unseen = [r for r in rows if r["unseen"]]
    wrong = [r for r in unseen if not r["shape"]]
    return {
        "release": release, "split": split, "scenes": num,
        "exact_match": sum(c.strip() == s.caption() for c, s in zip(captions, scenes)) / num,
        **{f"{a}_accuracy": sum(r[a] for r in rows) / len(rows) for a in ATTRIBUTES},
        "unseen_pair_objects": len(unseen),
        "unseen_color_accuracy": sum(r["color"] for r in unseen) / max(len(unseen), 1),
        "unseen_shape_accuracy": sum(r["shape"] for r in unseen) / max(len(unseen), 1),
        "unseen_wrong_shape_seen_with_color": sum(r["prior_shape"] for r in wrong) / max(len(wrong), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("releases", nargs="+")
    parser.add_argument("--split", default="heldout_val", choices=["val", "heldout_val", "test", "heldout"])
    parser.add_argument("--num", type=int, default=256)
    parser.add_argument("--json", type=Path, help="where the JSON goes",
                        default=Path(__file__).parent / "results" / "caption_attributes.json")
    args = parser.parse_args()
    results = [measure(r, args.split, args.num) for r in args.releases]
    keys = [k for k in results[0] if k not in ("release", "split", "scenes")]
    print("| release | " + " | ".join(keys) + " |\n|---|" + "---:|" * len(keys))
    for r in results:
        print(f"| {r['release']} | " + " | ".join(f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k])
                                                  for k in keys) + " |")
    with atomic_path(args.json) as tmp:
        tmp.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
