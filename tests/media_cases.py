"""Hostile and odd-but-valid media files, written on demand, with what anytoken's input policy says about
each: ``None`` (a documented result: it is read) or a regex of the one-line error. Used by the fuzz tests
and by ``benchmarks/bench_media_memory.py``."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

Case = tuple[Callable[[Path], None], str | None]  # (writer of the file at a path, expected error or None)


def _image(array: np.ndarray, mode: str | None = None, **save: object) -> Callable[[Path], None]:
    return lambda path: Image.fromarray(array, mode).save(path, **save)


def _bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def _truncated(writer: Callable[[Path], None], keep: float) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        writer(path)
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])

    return write


def _converted(array: np.ndarray, mode: str, suffix: str) -> Callable[[Path], None]:
    return lambda path: Image.fromarray(array).convert(mode).save(path, format=suffix)


RNG = np.random.default_rng(0)
PHOTO = RNG.integers(0, 255, (48, 64, 3), dtype=np.uint8)

IMAGES: dict[str, Case] = {
    "ordinary.png": (_image(PHOTO), None),
    "truncated.png": (_truncated(_image(PHOTO), 0.5), "truncated or corrupt"),
    "truncated.jpg": (_truncated(_image(PHOTO, quality=90), 0.5), "truncated or corrupt"),
    "empty.png": (_bytes(b""), "not a readable image"),
    "text.png": (_bytes(b"this is not an image\n"), "not a readable image"),
    "random.jpg": (_bytes(RNG.integers(0, 256, 4096, dtype=np.uint8).tobytes()), "not a readable image"),
    "one_pixel.png": (_image(PHOTO[:1, :1]), None),
    "gray16.png": (_image((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)), None),
    "cmyk.jpg": (_converted(PHOTO, "CMYK", "JPEG"), None),
    "palette.png": (_converted(PHOTO, "P", "PNG"), None),
    "rgba.png": (_converted(PHOTO, "RGBA", "PNG"), None),
    "huge.png": (_image(np.zeros((6000, 6000), np.uint8)),
                 r"6000 x 6000 pixels is more than anytoken decodes"),
    "huge.jpg": (_image(np.zeros((6000, 6000), np.uint8), quality=50), None),  # decoded at 1/8 scale
    "strip.png": (_image(RNG.integers(0, 255, (1, 60000, 3), dtype=np.uint8)), None),
}


def _wave(samples: np.ndarray, rate: int, **kw: object) -> Callable[[Path], None]:
    return lambda path: sf.write(str(path), samples, rate, **kw)


TONE = 0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)


def _tone(rate: int, seconds: float = 1.0) -> np.ndarray:
    return 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(rate * seconds)) / rate)


AUDIO: dict[str, Case] = {
    "ordinary.wav": (_wave(TONE, 16000), None),
    "empty.wav": (_bytes(b""), "the file is empty"),
    "zero_frames.wav": (_wave(np.zeros((0, 1)), 16000), "no samples"),
    "truncated.wav": (_truncated(_wave(_tone(16000, 2.0), 16000), 0.5), "truncated"),
    "nan.wav": (_wave(np.full(800, np.nan), 16000, subtype="FLOAT"), "NaN"),
    "text.wav": (_bytes(b"RIFF not really"), "not a valid audio file"),
    "fake.mp3": (_bytes(RNG.integers(0, 256, 2048, dtype=np.uint8).tobytes()), "not a valid audio file"),
    "pcm8.wav": (_wave(TONE, 16000, subtype="PCM_U8"), None),
    "stereo44k.flac": (_wave(np.stack([_tone(44100)] * 2, axis=1), 44100), None),
    "rate8001.wav": (_wave(_tone(8001), 8001), None),
    "rate44101.wav": (_wave(_tone(44101), 44101), None),
    "rate1.wav": (_wave(np.zeros(2), 1), "1 Hz"),
    "silence.wav": (_wave(np.zeros(16000), 16000), None),  # encoded, with a warning
    "square.wav": (_wave(np.sign(TONE + 1e-9), 16000), None),  # clipped: clamped, with a warning
    "hot.wav": (_wave(np.clip(TONE * 4, -1.2, 1.2), 16000, subtype="FLOAT"), None),  # outside [-1, 1]
    "one_sample.wav": (_wave(np.full(1, 0.1), 16000), None),
    "long.wav": (_wave(np.tile(TONE, 60), 16000), None),  # a minute
}


def _npy(array: object) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with open(path, "wb") as f:
            np.save(f, array, allow_pickle=True)

    return write


TOKENS: dict[str, Case] = {
    "float.npy": (_npy(np.zeros((1, 8, 8), np.float32)), "integers"),
    "negative.npy": (_npy(np.full((1, 8, 8), -1)), r"lie in \[0, "),
    "out_of_range.npy": (_npy(np.full((1, 8, 8), 10**6)), r"lie in \[0, "),
    "pickled.npy": (_npy(np.array([{"a": 1}], dtype=object)), "never unpickles"),
    "raw_pickle.npy": (_bytes(pickle.dumps({"a": 1})), "not a .npy file"),
    "text.npy": (_bytes(b"1 2 3\n"), "not a .npy file"),
    "empty.npy": (_bytes(b""), "not a .npy file"),
}
WRONG_SHAPE = (_npy(np.zeros((2, 3, 5, 7), np.int64)), None)  # the error depends on the tokenizer


def _csv(text: str, encoding: str = "utf-8") -> Callable[[Path], None]:
    return lambda path: path.write_bytes(text.encode(encoding))


TABLE_HEADER = "a,b\n"
TABLES: dict[str, Case] = {
    "ordinary.csv": (_csv(TABLE_HEADER + "0.5,x\n1.5,y\n"), None),
    "empty.csv": (_csv(""), "not a readable table"),
    "header_only.csv": (_csv(TABLE_HEADER), None),  # zero rows round-trip
    "ragged.csv": (_csv(TABLE_HEADER + "0.5,x,extra,more\n1.5\n"), "not a readable table"),
    "mixed.csv": (_csv(TABLE_HEADER + "0.5,x\nhello,y\n"), "numeric in the schema"),
    "inf.csv": (_csv(TABLE_HEADER + "inf,x\n"), "infinit"),
    "unseen.csv": (_csv(TABLE_HEADER + "0.5,never_seen\n"), None),  # the column's unknown id
    "bom.csv": (_csv("\ufeff" + TABLE_HEADER + "0.5,x\n"), None),
    "latin1.csv": (_csv(TABLE_HEADER + "0.5,caf\xe9\n", "latin-1"), "not a readable table"),
}

TRAJECTORIES: dict[str, Case] = {
    "scene.csv": (_csv("scene,agent,t,x,y\ns,a,0,1,1\ns,a,1,1.5,1\ns,a,2,2,1\n"
                       "s,b,0,5,5\ns,b,1,5,5.5\ns,b,2,5,6\n"), None),
    "bom.csv": (_csv("\ufeffscene,agent,t,x,y\ns,a,0,0,0\ns,a,1,1,0\n"), None),
    "two_scenes.csv": (_csv("scene,agent,t,x,y\ns,a,0,0,0\ns,a,1,1,0\nr,a,0,0,0\nr,a,1,1,0\n"), "one scene"),
    "missing_column.csv": (_csv("scene,agent,t,x\ns,a,0,0\n"), r"missing \['y'\]"),
    "nan.csv": (_csv("scene,agent,t,x,y\ns,a,0,nan,0\ns,a,1,1,0\n"), "finite"),
    "backwards.csv": (_csv("scene,agent,t,x,y\ns,a,1,0,0\ns,a,0,1,0\n"), "strictly increasing"),
    "binary.csv": (_bytes(b"\x00\xff\xfe\x00garbage"), "not a readable|missing"),
}


def write_case(folder: Path, name: str, case: Case) -> Path:
    """Write ``case``'s file as ``folder/name``; returns its path."""
    path = folder / name
    case[0](path)
    return path

