"""``anytoken bench``: one benchmark for every tokenizer, native or adapted, against the codecs people use.

Each tokenizer codes the media files of its modality (images, audio, poses, trajectories, tables, text);
the harness scores the round trip in the modality's own metric, times encode and decode, runs the peers
(JPEG and WebP at the same bits per pixel; Opus, Codec2 and mu-law at the nearest bitrates) on the same
media, and reports one table per media kind (``report.py``). A peer that cannot run is a row saying why.
"""

from anytoken.bench.report import Report
from anytoken.bench.run import run_bench

__all__ = ["Report", "run_bench"]
