"""Speech with transcripts in the LibriSpeech layout (also LibriTTS-style corpora converted to it)::

    ROOT/SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt    one line per utterance: "SPEAKER-CHAPTER-NNNN TEXT"
    ROOT/SPEAKER/CHAPTER/SPEAKER-CHAPTER-NNNN.flac

``ROOT`` may be a corpus split (``train-clean-100``) or any folder above such trees: every
``*.trans.txt`` under it is read. Every transcript line must name an audio file that exists, so a wrong
path or a broken corpus fails when the dataset is built, not in the middle of an epoch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

AUDIO_SUFFIX = ".flac"


class LibriSpeechDataset(Dataset):
    """Utterances of a LibriSpeech-layout folder, sorted by id: items ``{"path", "text", "id"}`` (the audio
    file, its transcript as written, and its utterance id); the audio is read by whoever consumes them.

    Args:
        root: the folder to search for ``*.trans.txt`` files.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"LibriSpeech folder not found: {self.root}")
        transcripts = sorted(self.root.rglob("*.trans.txt"))
        if not transcripts:
            raise ValueError(f"no *.trans.txt transcripts under {self.root}: not a LibriSpeech-layout folder")
        items = [item for path in transcripts for item in _read_transcripts(path)]
        self.items = sorted(items, key=lambda item: item["id"])

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return dict(self.items[index])


def _read_transcripts(path: Path) -> list[dict[str, Any]]:
    """The utterances one ``*.trans.txt`` lists, each checked to have its audio file beside it."""
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        utterance, _, text = line.strip().partition(" ")
        if not text.strip():
            raise ValueError(f"{path}:{number}: expected 'UTTERANCE-ID TRANSCRIPT', got {line.strip()!r}")
        audio = path.parent / f"{utterance}{AUDIO_SUFFIX}"
        if not audio.is_file():
            raise ValueError(f"{path}:{number}: no audio file {audio.name} beside the transcript")
        items.append({"path": str(audio), "text": text.strip(), "id": utterance})
    return items


def write_librispeech(root: str | Path, speakers: dict[tuple[int, int], list[tuple[Any, str]]],
                      sample_rate: int) -> Path:
    """Write utterances in the LibriSpeech layout (test fixtures, benchmarks, converting a corpus):
    ``speakers`` maps ``(speaker, chapter)`` to ``(wave [1, T] in [-1, 1], transcript)`` pairs, written
    as FLAC at ``sample_rate`` with one ``*.trans.txt`` per chapter. Returns ``root``."""
    import soundfile as sf

    root = Path(root)
    for (speaker, chapter), utterances in speakers.items():
        folder = root / str(speaker) / str(chapter)
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for n, (wave, text) in enumerate(utterances):
            utterance = f"{speaker}-{chapter}-{n:04d}"
            sf.write(folder / f"{utterance}{AUDIO_SUFFIX}", wave[0].numpy(), sample_rate, format="FLAC")
            lines.append(f"{utterance} {text}")
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root
