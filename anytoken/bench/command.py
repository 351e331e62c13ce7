"""``anytoken bench --tokenizer PATH MEDIA...``: print one table per media kind and write the JSON."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from anytoken.bench.timing import BUSY_LOAD


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """The command's arguments (``--help`` lists them)."""
    parser = argparse.ArgumentParser(
        prog="anytoken bench",
        description="Benchmark tokenizers on media files against JPEG/WebP (images) and Opus/Codec2/mu-law "
        "(audio): one table per media kind, and every figure in a JSON file.")
    parser.add_argument("media", nargs="+",
                        help="media files or folders; a folder is one set, files named directly are grouped "
                        "by their folder. Images, audio, COCO keypoints .json, trajectory .csv "
                        "(scene,agent,t,x,y), tables (.csv/.parquet), text (.txt)")
    parser.add_argument("--tokenizer", action="append", required=True,
                        help="a directory written by save_pretrained (native or adapted), or a registered "
                        "name with an optional JSON config, e.g. 'trajectory:{\"max_delta\": 8}'; repeatable")
    parser.add_argument("--json", default="bench.json", help="the JSON file to write (default bench.json)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed runs of encode and decode; the fastest counts")
    parser.add_argument("--batch-size", type=int, default=8, help="images encoded per call")
    parser.add_argument("--levels", type=int, nargs="+",
                        help="audio: score these numbers of codebook levels (tokenizers that can drop some)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> None:
    """Run the benchmark ``argv`` asks for, print its tables and write its JSON."""
    args = parse(argv)
    import torch

    from anytoken.bench.run import run_bench

    if args.threads:
        torch.set_num_threads(args.threads)
    report = run_bench(args.tokenizer, args.media, repeats=args.repeats, batch_size=args.batch_size,
                       levels=args.levels, command=["anytoken", "bench", *argv])
    print(report.format())
    m = report.machine
    loads = [v for v in (m["load_average_1min"], m["load_average_1min_end"]) if v is not None]
    print(f"\n{m['cpus']} CPUs, {m['torch_threads']} torch threads, 1-min load average "
          f"{' -> '.join(f'{v:.2f}' for v in loads) or 'unknown'}")
    if loads and max(loads) > BUSY_LOAD:
        print(f"the load average exceeded {BUSY_LOAD}: rerun on a quiet machine before quoting throughput")
    report.write_json(args.json)
    print(f"wrote {args.json}")
