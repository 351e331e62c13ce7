#!/usr/bin/env bash
# The main job: install anytoken, train a small image captioner on the built-in scenes (2 CPU cores,
# a few minutes), then print held-out metrics and generated captions beside their references.
# The checkpoint lands in runs/caption_scenes/checkpoints/last.ckpt, the release in runs/caption_scenes/release.
set -euo pipefail
cd "$(dirname "$0")"
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 GRADIO_ANALYTICS_ENABLED=False
SECONDS=0
scripts/install.sh 2>&1 | grep -v "^WARNING: Location" || true
echo "install: ${SECONDS}s"
.venv/bin/anytoken fit --config configs/caption_scenes.yaml
.venv/bin/anytoken test --config configs/caption_scenes.yaml --ckpt_path runs/caption_scenes/checkpoints/last.ckpt
echo "quickstart wall time (install + train + test): ${SECONDS}s"
