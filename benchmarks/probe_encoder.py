"""Does an image encoder see shape apart from colour? A linear probe on its frozen features.

For every object of ``--train`` training scenes, the feature of its cell's token (encoder output, and after
the model's projector) is paired with the object's shape and colour. A logistic regression fitted on them
is then asked about the objects of ``--heldout`` held-out scenes: those of the 8 (colour, shape) pairs no
training scene holds, and the others. A probe that names the shape of a red circle having seen circles of
other colours only is reading shape apart from colour. A second probe, fitted and tested (5-fold) on the
unseen pairs' objects themselves, tells whether their shape is in the features at all. Needs a scenes
model whose encoder gives one token per grid cell (the quickstart captioner: 48 px, a 3x3 grid).

    python benchmarks/probe_encoder.py runs/caption_scenes/release [more releases ...]

Prints a table and writes benchmarks/results/probe_encoder.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

import anytoken
from anytoken.atomic import atomic_path
from anytoken.tasks.data.synthetic.scenes import HELDOUT_PAIRS, POSITIONS, ScenesConfig, make_scenes
from anytoken.tokenizers.image_io import image_to_tensor


def object_features(model: Any, split: str, num: int, config: ScenesConfig) -> dict[str, np.ndarray]:
    """Per object of ``num`` scenes: its cell's encoder and projected features, shape, colour, and
    whether its (colour, shape) pair is a held-out one."""
    rows: dict[str, list[Any]] = {"encoder": [], "projected": [], "shape": [], "color": [], "unseen": []}
    scenes = make_scenes(split, num, config)
    for start in range(0, num, 250):
        chunk = scenes[start : start + 250]
        images = torch.stack([image_to_tensor(s.render(config.image_size), config.image_size) for s in chunk])
        with torch.no_grad():
            encoded = model.image_encoder(images)  # (B, 9, C)
            projected = model.projector(encoded)  # (B, 9, d)
        if encoded.shape[1] != len(POSITIONS):
            raise ValueError(f"the encoder gives {encoded.shape[1]} tokens per image; the probe needs one "
                             f"per scene cell ({len(POSITIONS)})")
        for scene, enc, proj in zip(chunk, encoded, projected):
            for obj in scene.objects:
                cell = POSITIONS.index(obj.cell)
                rows["encoder"].append(enc[cell].numpy())
                rows["projected"].append(proj[cell].numpy())
                rows["shape"].append(obj.shape)
                rows["color"].append(obj.color)
                rows["unseen"].append((obj.color, obj.shape) in HELDOUT_PAIRS)
    return {key: np.array(values) for key, values in rows.items()}


def probe(release: str, num_train: int, num_heldout: int) -> dict[str, Any]:
    model = anytoken.load(release)
    size = model.image_encoder.config.image_size
    config = ScenesConfig(image_size=size, min_objects=1, max_objects=2, seed=0)
    train = object_features(model, "train", num_train, config)
    heldout = object_features(model, "heldout", num_heldout, config)
    unseen = heldout["unseen"]
    result: dict[str, Any] = {"release": release, "objects_train": len(train["shape"]),
                              "objects_unseen_pairs": int(unseen.sum())}
    for features in ("encoder", "projected"):
        for attribute in ("shape", "color"):
            classifier = LogisticRegression(max_iter=2000).fit(train[features], train[attribute])
            right = classifier.predict(heldout[features]) == heldout[attribute]
            result[f"{features}/{attribute}/unseen_pairs"] = float(right[unseen].mean())
            result[f"{features}/{attribute}/seen_pairs"] = float(right[~unseen].mean())
        within = cross_val_score(LogisticRegression(max_iter=2000), heldout[features][unseen],
                                 heldout["shape"][unseen], cv=5)
        result[f"{features}/shape/unseen_pairs_5fold"] = float(within.mean())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("releases", nargs="+", help="scenes model releases or .ckpt files")
    parser.add_argument("--train", type=int, default=3000, help="training scenes the probe is fitted on")
    parser.add_argument("--heldout", type=int, default=1000, help="held-out scenes it is asked about")
    parser.add_argument("--output", default="benchmarks/results/probe_encoder.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = [probe(r, args.train, args.heldout) for r in args.releases]
    print("\nLinear probe on the object's cell token: accuracy on held-out scenes")
    print(f"{'release':<40} {'features':<10} {'shape unseen':>13} {'shape seen':>11} {'colour unseen':>14} "
          f"{'shape unseen, 5-fold on them':>29}")
    for r in results:
        for features in ("encoder", "projected"):
            print(f"{r['release']:<40} {features:<10} {r[f'{features}/shape/unseen_pairs']:>13.3f} "
                  f"{r[f'{features}/shape/seen_pairs']:>11.3f} {r[f'{features}/color/unseen_pairs']:>14.3f} "
                  f"{r[f'{features}/shape/unseen_pairs_5fold']:>29.3f}")
    with atomic_path(Path(args.output)) as tmp:
        tmp.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {args.output}")


if __name__ == "__main__":
    main()
