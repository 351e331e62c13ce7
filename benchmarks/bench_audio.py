"""Audio tokenizers side by side on held-out speech: the trained codec at its bitrates, Opus at 6 kbps
(opus-tools), Codec2 at 3.2 kbps (codec2) and the 8-bit mu-law baseline; the codec's encode+decode
real-time factor; given a speech-to-text release, its word error rate on held-out spoken captions; and
given a text-to-speech release too, how well the speech-to-text model understands what it says.

    python benchmarks/bench_audio.py --codec runs/codec_speech16k/tokenizer [--stt runs/speech_stt/release]
        [--tts runs/speech_tts/release]

Held-out speech: the recorded words of alsa-utils (human speech, 48 kHz, never trained on) and spoken
scenes captions of the ``heldout`` split (espeak-ng voices no training split uses). Everything is
compared at the codec's sample rate (16 kHz); Codec2 is narrowband (8 kHz), so its output is upsampled
and loses the 4-8 kHz band in the mel distance. Prints a table and writes benchmarks/results/audio.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

import anytoken
from anytoken.atomic import atomic_path
from anytoken.tasks.data.synthetic.scenes import ScenesConfig
from anytoken.tasks.data.synthetic.spoken import alsa_words, spoken_scenes, synthesize_all
from anytoken.tasks.metrics.audio import bitrate_kbps, error_rates, mel_distance, si_snr, tokens_per_second
from anytoken.tokenizers import AudioCodecTokenizer, MuLawTokenizer, Tokenizer
from anytoken.tokenizers.audio_io import read_audio, resample


def held_out_speech(rate: int, num_spoken: int, scenes: ScenesConfig) -> dict[str, list[torch.Tensor]]:
    """``{"alsa": [...], "spoken": [...]}`` waves ``[1, T]`` at ``rate``."""
    sets = {"alsa": [read_audio(p, rate, 1)[0] for p, _ in alsa_words()]}
    sets["spoken"] = synthesize_all(spoken_scenes("heldout", num_spoken, scenes), rate)
    return {k: v for k, v in sets.items() if v}


def _run(cmd: list[str]) -> None:
    out = subprocess.run(cmd, capture_output=True)
    if out.returncode:
        raise RuntimeError(f"{cmd[0]} failed: {out.stderr.decode(errors='replace')[:300]}")


def opus(wave: torch.Tensor, rate: int, kbps: float, tmp: Path) -> tuple[torch.Tensor, float]:
    """Opus round trip at ``kbps`` (opusenc/opusdec): (decoded wave, measured kbps of the .opus file)."""
    sf.write(tmp / "in.wav", wave[0].numpy(), rate, subtype="PCM_16")
    _run(["opusenc", "--quiet", "--bitrate", str(kbps), str(tmp / "in.wav"), str(tmp / "x.opus")])
    _run(["opusdec", "--quiet", "--rate", str(rate), str(tmp / "x.opus"), str(tmp / "out.wav")])
    data, _ = sf.read(tmp / "out.wav", dtype="float32", always_2d=True)
    measured = (tmp / "x.opus").stat().st_size * 8 / 1000 / (wave.shape[-1] / rate)
    return torch.from_numpy(data[:, 0].copy())[None], measured


def codec2(wave: torch.Tensor, rate: int, mode: int, tmp: Path) -> torch.Tensor:
    """Codec2 round trip at ``mode`` bit/s (8 kHz raw PCM through c2enc/c2dec), back at ``rate``."""
    narrow = resample(wave, rate, 8000)
    (tmp / "in.raw").write_bytes((narrow[0].clamp(-1, 1) * 32767).round().short().numpy().tobytes())
    _run(["c2enc", str(mode), str(tmp / "in.raw"), str(tmp / "x.c2")])
    _run(["c2dec", str(mode), str(tmp / "x.c2"), str(tmp / "out.raw")])
    decoded = torch.from_numpy(
        np.frombuffer((tmp / "out.raw").read_bytes(), dtype=np.int16).astype(np.float32)
    )
    return resample(decoded[None] / 32768, 8000, rate)


def split_like(wave: torch.Tensor, parts: list[torch.Tensor]) -> list[torch.Tensor]:
    """Cut ``wave`` ``[1, T]`` (a round trip of the parts one after another) back into the parts' lengths."""
    wave = torch.nn.functional.pad(wave, (0, max(0, sum(p.shape[-1] for p in parts) - wave.shape[-1])))
    return list(
        wave.split([p.shape[-1] for p in parts] + [wave.shape[-1] - sum(p.shape[-1] for p in parts)], -1)
    )[:-1]


def score(
    name: str, kbps: float, tps: float | None, refs: list[torch.Tensor], outs: list[torch.Tensor], rate: int
) -> dict[str, float | str | None]:
    return {
        "system": name,
        "kbps": round(kbps, 2),
        "tokens_per_s": tps,
        "si_snr_db": float(np.mean([si_snr(r, o) for r, o in zip(refs, outs)])),
        "mel_distance": float(np.mean([mel_distance(r, o, rate) for r, o in zip(refs, outs)])),
    }


def codec_rows(codec: AudioCodecTokenizer, levels: list[int], refs: list[torch.Tensor]) -> list[dict]:
    rows = []
    for k in levels:
        codec.with_codebooks(k)
        outs = [codec.decode(codec.encode(r))[0] for r in refs]
        rows.append(
            score(
                f"anytoken codec ({k} levels)",
                bitrate_kbps(codec),
                tokens_per_second(codec),
                refs,
                outs,
                codec.sample_rate,
            )
        )
    codec.with_codebooks(None)
    return rows


def real_time_factor(codec: AudioCodecTokenizer, seconds: float = 20.0, repeats: int = 3) -> dict[str, float]:
    """Seconds of audio encoded+decoded per wall-clock second (best of ``repeats``)."""
    g = torch.Generator().manual_seed(0)
    wave = (0.1 * torch.randn(1, 1, int(seconds * codec.sample_rate), generator=g)).clamp(-1, 1)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        codec.decode(codec.encode(wave))
        best = min(best, time.perf_counter() - start)
    return {"x_real_time": seconds / best, "threads": torch.get_num_threads()}


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
    parser.add_argument("--codec", required=True, help="a trained audio codec (save_pretrained directory)")
    parser.add_argument("--levels", type=int, nargs="+", default=[4, 8, 15], help="codec levels to score")
    parser.add_argument("--num-spoken", type=int, default=16, help="held-out spoken captions")
    parser.add_argument("--stt", help="a speech-to-text release directory: report its CER/WER")
    parser.add_argument("--num-stt", type=int, default=64, help="spoken captions per split for CER/WER")
    parser.add_argument("--tts", help="a text-to-speech release: the --stt model's CER/WER on its speech")
    parser.add_argument("--objects", type=int, default=1, help="objects per spoken scene (the configs' 1)")
    parser.add_argument("--out", default="benchmarks/results/audio.json")
    args = parser.parse_args()
    codec = Tokenizer.from_pretrained(args.codec)
    if not isinstance(codec, AudioCodecTokenizer):
        raise SystemExit(f"{args.codec} holds a {type(codec).__name__}, not an audio codec")
    scenes = ScenesConfig(min_objects=args.objects, max_objects=args.objects)
    rate, results = codec.sample_rate, {"codec": args.codec, "config": codec.config(), "sets": {}}
    mulaw = MuLawTokenizer(sample_rate=rate)
    tools = {name: shutil.which(name) for name in ("opusenc", "opusdec", "c2enc", "c2dec")}
    for name, refs in held_out_speech(rate, args.num_spoken, scenes).items():
        rows = codec_rows(codec, [k for k in args.levels if k <= codec.cfg.num_quantizers], refs)
        with tempfile.TemporaryDirectory() as tmp:
            if tools["opusenc"] and tools["opusdec"]:  # one file: Ogg headers do not inflate the bitrate
                decoded, measured = opus(torch.cat(refs, dim=-1), rate, 6, Path(tmp))
                rows.append(
                    score(
                        f"Opus 6 kbps (file: {measured:.2f})",
                        6.0,
                        None,
                        refs,
                        split_like(decoded, refs),
                        rate,
                    )
                )
            if tools["c2enc"] and tools["c2dec"]:
                decoded = codec2(torch.cat(refs, dim=-1), rate, 3200, Path(tmp))
                rows.append(score("Codec2 3.2 kbps", 3.2, None, refs, split_like(decoded, refs), rate))
        rows.append(
            score(
                "mu-law 8 bit",
                bitrate_kbps(mulaw),
                tokens_per_second(mulaw),
                refs,
                [mulaw.decode(mulaw.encode(r))[0] for r in refs],
                rate,
            )
        )
        results["sets"][name] = {"seconds": sum(r.shape[-1] for r in refs) / rate, "rows": rows}
    results["rtf"] = {
        "trained": real_time_factor(codec.eval()),
        "default": real_time_factor(AudioCodecTokenizer().eval()),
    }
    if args.stt:
        results["stt"] = stt_wer(args.stt, args.num_stt, scenes)
    if args.tts and args.stt:
        results["tts"] = tts_intelligibility(args.tts, args.stt, args.num_stt, scenes)
    for name, entry in results["sets"].items():
        print(f"\nheld-out {name} ({entry['seconds']:.1f} s)")
        print(f"{'system':<28}{'kbps':>8}{'tokens/s':>10}{'SI-SNR dB':>11}{'mel dist':>10}")
        for r in entry["rows"]:
            tps = "-" if r["tokens_per_s"] is None else f"{r['tokens_per_s']:.0f}"
            print(
                f"{r['system']:<28}{r['kbps']:>8.2f}{tps:>10}{r['si_snr_db']:>11.2f}{r['mel_distance']:>10.3f}"
            )
    print(
        "\nencode+decode speed (x real time):",
        {k: round(v["x_real_time"], 1) for k, v in results["rtf"].items()},
    )
    if "stt" in results:
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
