"""Write the real media ``anytoken bench`` is run on in benchmarks/README.md, one folder per set:

- ``photos_heldout``: scikit-image's chelsea and coffee and scikit-learn's flower (no tokenizer trained here
  saw them); ``photos_seen``: astronaut, rocket, camera, coins and scikit-learn's china (the image VQ
  trained on random tiles of these; the benchmark codes each whole photo at the tokenizer's size);
  ``photo_tiles``: 64 x 64 tiles of the held-out photos (random side and position, as training cuts them).
- ``alsa``: alsa-utils' recorded words (human speech, 8 files); ``espeak``: held-out spoken scenes captions
  (espeak-ng voices no training split uses) and a few sentences outside the scenes vocabulary.
- ``traja``: traja's real 115-step track (pixels) as a ``scene,agent,t,x,y`` file; ``motion_sim``: simulated
  3-agent scenes of 20 steps, one file each.
- ``tables``: scikit-learn's bundled tables (iris, wine, breast_cancer, diabetes, digits) as CSV;
  ``tables_mixed``: a synthetic table with every column kind and 5% missing values.
- ``stick_figures``: 500 poses of the stick-figures generator as a COCO keypoints file (synthetic: no real
  keypoint annotations ship with the installed packages).

    python benchmarks/bench_media.py --out /tmp/bench_media
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from anytoken.tasks.data.formats.coco_keypoints import CocoKeypoints, write_coco_keypoints
from anytoken.tasks.data.images_folder import HELDOUT_PHOTOS, PhotoTiles, load_photo
from anytoken.tasks.data.synthetic.motion import MotionConfig, MotionDataset
from anytoken.tasks.data.synthetic.spoken import Utterance, alsa_words, spoken_scenes, synthesize_all
from anytoken.tasks.data.synthetic.stick_figures import StickFiguresConfig, figure_seed, make_figure
from anytoken.tasks.data.tables import load_bundled
from anytoken.tokenizers.audio_io import write_audio
from anytoken.tokenizers.pose import COCO_KEYPOINTS
from anytoken.tokenizers.trajectory_csv import Track, write_trajectory_csv

SEEN_PHOTOS = ("astronaut", "rocket", "camera", "coins", "sklearn:china.jpg")
SENTENCES = ("the quick brown fox jumps over the lazy dog", "please call stella and ask her to bring these",
             "it is twenty past seven in the evening", "numbers like forty two are easy to say")
TABLES = ("iris", "wine", "breast_cancer", "diabetes", "digits")


def photos(out: Path, num_tiles: int) -> None:
    for folder, names in (("photos_heldout", HELDOUT_PHOTOS), ("photos_seen", SEEN_PHOTOS)):
        (out / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            stem = name.removeprefix("sklearn:").removesuffix(".jpg")
            Image.fromarray(load_photo(name)).save(out / folder / f"{stem}.png")
    (out / "photo_tiles").mkdir(parents=True, exist_ok=True)
    tiles = PhotoTiles("heldout", num_tiles, image_size=64)
    for i in range(num_tiles):
        array = (tiles[i].permute(1, 2, 0) * 255).round().byte().numpy()
        Image.fromarray(array).save(out / "photo_tiles" / f"{i:04d}.png")


def speech(out: Path, num_spoken: int) -> None:
    (out / "alsa").mkdir(parents=True, exist_ok=True)
    for path, _ in alsa_words():
        shutil.copy(path, out / "alsa" / path.name)
    (out / "espeak").mkdir(parents=True, exist_ok=True)
    voices = spoken_scenes("heldout", len(SENTENCES), seed=1)  # held-out voices, speeds and pitches
    utterances = spoken_scenes("heldout", num_spoken) + [
        Utterance(text, u.voice, u.speed, u.pitch) for text, u in zip(SENTENCES, voices)]
    for i, wave in enumerate(synthesize_all(utterances, 16000)):
        write_audio(out / "espeak" / f"{i:02d}.wav", wave, 16000)


def trajectory(out: Path, num_scenes: int) -> None:
    spec = importlib.util.find_spec("traja")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("traja is not installed (pip install traja): it ships the real trajectory")
    with open(Path(spec.submodule_search_locations[0]) / "tests" / "data" / "3527.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    (out / "traja").mkdir(parents=True, exist_ok=True)
    t = np.array([float(r["Time"]) for r in rows])
    xy = np.array([[float(r["x"]), float(r["y"])] for r in rows])
    write_trajectory_csv(out / "traja" / "3527.csv", [Track("3527", rows[0]["TrackId"], t, xy)])
    (out / "motion_sim").mkdir(parents=True, exist_ok=True)
    scenes = MotionDataset("test", num_scenes, 20, MotionConfig(num_agents=3)).positions  # (N, 3, 20, 2)
    for i, scene in enumerate(scenes):
        tracks = [Track(str(i), str(a), np.arange(20.0), scene[a]) for a in range(len(scene))]
        write_trajectory_csv(out / "motion_sim" / f"{i:03d}.csv", tracks)


def tables(out: Path, mixed_rows: int) -> None:
    (out / "tables").mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        load_bundled(name).to_csv(out / "tables" / f"{name}.csv", index=False)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "float": rng.normal(size=mixed_rows), "skewed": rng.lognormal(size=mixed_rows),
        "int_many": rng.integers(0, 10**5, mixed_rows), "int_few": rng.integers(0, 5, mixed_rows),
        "city": rng.choice(["paris", "oslo", "lima", "rome"], mixed_rows),
        "flag": rng.random(mixed_rows) < 0.3,
    })
    for column in ("float", "city"):
        frame[column] = frame[column].mask(rng.random(mixed_rows) < 0.05)
    (out / "tables_mixed").mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "tables_mixed" / "mixed.csv", index=False)


def poses(out: Path, num: int, size: int = 64) -> None:
    config = StickFiguresConfig(image_size=size)
    figures = [make_figure(np.random.default_rng(figure_seed("test", i, 0)), config) for i in range(num)]
    images = {i: {"id": i, "file_name": f"{i}.png", "width": size, "height": size} for i in range(num)}
    annotations = [{"id": i, "image_id": i, "keypoints": f.keypoints, "bbox": list(f.bbox)}
                   for i, f in enumerate(figures)]
    (out / "stick_figures").mkdir(parents=True, exist_ok=True)
    data = CocoKeypoints(images, annotations, COCO_KEYPOINTS)
    write_coco_keypoints(out / "stick_figures" / "test.json", data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the folder to write the sets into")
    parser.add_argument("--num-spoken", type=int, default=16, help="held-out spoken scenes captions")
    parser.add_argument("--num-poses", type=int, default=500)
    parser.add_argument("--num-tiles", type=int, default=64, help="held-out photo tiles")
    parser.add_argument("--num-scenes", type=int, default=100, help="simulated motion scenes")
    parser.add_argument("--mixed-rows", type=int, default=100_000, help="rows of the synthetic mixed table")
    args = parser.parse_args()
    photos(args.out, args.num_tiles)
    speech(args.out, args.num_spoken)
    trajectory(args.out, args.num_scenes)
    tables(args.out, args.mixed_rows)
    poses(args.out, args.num_poses)
    print(f"wrote {', '.join(sorted(p.name for p in args.out.iterdir()))} under {args.out}")


if __name__ == "__main__":
    main()
