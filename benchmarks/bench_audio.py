"""Speech models on held-out speech: a speech-to-text release's error rates on held-out spoken captions and
on alsa-utils' recorded words; given a text-to-speech release too, how well the speech-to-text model
understands what it says. (The audio tokenizers themselves are measured by ``anytoken bench``.)

    python benchmarks/bench_audio.py --stt runs/speech_stt/release [--tts runs/speech_tts/release]

Held-out speech: spoken scenes captions of the ``test`` and ``heldout`` splits (espeak-ng; the heldout split
has voices no training split uses) and the recorded words of alsa-utils (human speech, never trained on).
Prints the error rates and writes benchmarks/results/audio.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import anytoken
from anytoken.atomic import atomic_path
from anytoken.tasks.data.synthetic.scenes import ScenesConfig
from anytoken.tasks.data.synthetic.spoken import alsa_words, spoken_scenes, synthesize_all
from anytoken.tasks.metrics.audio import error_rates
from anytoken.tokenizers.audio_io import read_audio


def stt_wer(release: str, num: int, scenes: ScenesConfig) -> dict[str, dict[str, float]]:
    """CER/WER of a speech-to-text release on held-out spoken captions and on alsa-utils' recorded words."""
    model = anytoken.load(release)
    rate, out = model.media_tokenizers["audio"].sample_rate, {}
    for split in ("test", "heldout"):
        utts = spoken_scenes(split, num, scenes)
        texts = model.transcribe(synthesize_all(utts, rate))
        out[split] = error_rates(texts, [u.text for u in utts]) | {
            "examples": list(zip(texts[:3], [u.text for u in utts[:3]]))
        }
    words = alsa_words()
    if words:
        texts = model.transcribe([read_audio(p, rate, 1)[0] for p, _ in words])
        out["alsa"] = error_rates(texts, [t for _, t in words]) | {
            "examples": list(zip(texts[:3], [t for _, t in words][:3]))
        }
    return out


def tts_intelligibility(
    tts_release: str, stt_release: str, num: int, scenes: ScenesConfig
) -> dict[str, float]:
    """CER/WER of the speech-to-text model on what the text-to-speech model says for held-out captions
    (its WAVs, re-encoded), and the generated / espeak duration ratio."""
    tts, stt = anytoken.load(tts_release), anytoken.load(stt_release)
    tts_rate = tts.media_tokenizers["audio"].sample_rate
    texts = [u.text for u in spoken_scenes("test", num, scenes)]
    waves = [w for i in range(0, num, 16) for w in tts.speak(texts[i : i + 16])]
    spoken = synthesize_all(spoken_scenes("test", num, scenes), tts_rate)
    ratio = sum(w.shape[-1] for w in waves) / sum(w.shape[-1] for w in spoken)
    heard = stt.transcribe(waves, tts_rate)
    return error_rates(heard, texts) | {"duration_ratio": ratio, "examples": list(zip(heard[:3], texts[:3]))}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stt", required=True, help="a speech-to-text release directory")
    parser.add_argument("--num-stt", type=int, default=64, help="spoken captions per split for CER/WER")
    parser.add_argument("--tts", help="a text-to-speech release: the --stt model's CER/WER on its speech")
    parser.add_argument("--objects", type=int, default=1, help="objects per spoken scene (the configs' 1)")
    parser.add_argument("--out", default="benchmarks/results/audio.json")
    args = parser.parse_args()
    scenes = ScenesConfig(min_objects=args.objects, max_objects=args.objects)
    results = {"stt": stt_wer(args.stt, args.num_stt, scenes)}
    if args.tts:
        results["tts"] = tts_intelligibility(args.tts, args.stt, args.num_stt, scenes)
    print(
        "speech to text:",
        {k: {m: round(v[m], 3) for m in ("cer", "wer")} for k, v in results["stt"].items()},
    )
    if "tts" in results:
        print(
            "text to speech, heard by the speech-to-text model:",
            {k: round(results["tts"][k], 3) for k in ("cer", "wer", "duration_ratio")},
        )
    with atomic_path(args.out) as tmp:
        Path(tmp).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
