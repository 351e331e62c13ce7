"""Peak memory of one ``anytoken encode`` call per odd input (issue 19's cases) against the same call on a
small ordinary file of its kind: each call runs in a fresh process and reports its peak RSS.

    python benchmarks/bench_media_memory.py

Prints a table and writes benchmarks/results/media_memory.json. The inputs come from tests/media_cases.py
(the fuzz suite's generators); the tokenizers are untrained (memory does not depend on training).
About a minute on 2 CPU cores.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from media_cases import AUDIO, IMAGES, write_case  # noqa: E402

from anytoken.atomic import atomic_path  # noqa: E402
from anytoken.tokenizers import MuLawTokenizer  # noqa: E402
from anytoken.tokenizers.image_vq import ImageVQTokenizer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "media_memory.json"
CASES = {  # input -> (tokenizer, the ordinary file it is compared with)
    "ordinary.wav": ("audio", "ordinary.wav"), "rate8001.wav": ("audio", "ordinary.wav"),
    "rate44101.wav": ("audio", "ordinary.wav"), "rate1.wav": ("audio", "ordinary.wav"),
    "long.wav": ("audio", "ordinary.wav"), "stereo44k.flac": ("audio", "ordinary.wav"),
    "ordinary.png": ("image", "ordinary.png"), "strip.png": ("image", "ordinary.png"),
    "huge.jpg": ("image", "ordinary.png"), "huge.png": ("image", "ordinary.png"),
}
PEAK = "import resource, sys\nfrom anytoken.cli import main\ntry:\n    main(sys.argv[1:])\n" \
       "except SystemExit as e:\n" \
       "    print(e.code, file=sys.stderr)\nprint(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"


def peak_rss_mb(argv: list[str]) -> tuple[float, str]:
    """Peak RSS (MB) of ``anytoken ARGV`` in a fresh process, and what it printed to stderr."""
    out = subprocess.run([sys.executable, "-c", PEAK, *argv], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024, out.stderr.strip().splitlines()[-1:]


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ImageVQTokenizer(image_size=64).save_pretrained(folder / "image")
        MuLawTokenizer(sample_rate=16000).save_pretrained(folder / "audio")
        for name, (kind, _) in CASES.items():
            source = write_case(folder, name, {**AUDIO, **IMAGES}[name])
            argv = ["encode", str(source), "--tokenizer", str(folder / kind),
                    "-o", str(folder / f"{name}.npy")]
            peak, said = peak_rss_mb(argv)
            rows.append({"input": name, "bytes": source.stat().st_size, "peak_rss_mb": round(peak),
                         "result": said[0].split(": ", 2)[-1][:60] if said else "encoded"})
    base = {r["input"]: r["peak_rss_mb"] for r in rows}
    for row in rows:
        row["above_ordinary_mb"] = row["peak_rss_mb"] - base[CASES[row["input"]][1]]
    print(pd.DataFrame(rows).to_string(index=False))
    print(f"largest excess over an ordinary file: {max(r['above_ordinary_mb'] for r in rows)} MB (bound 300)")
    with atomic_path(RESULTS) as tmp_out:
        tmp_out.write_text(json.dumps({"rows": rows, "bound_mb": 300}, indent=2))


if __name__ == "__main__":
    main()
