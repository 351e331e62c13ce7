#!/usr/bin/env bash
# Install anytoken with its test extras (plus the Debian packages some tests use) and run the test suite.
set -euo pipefail
cd "$(dirname "$0")"
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 GRADIO_ANALYTICS_ENABLED=False
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  # espeak-ng: spoken test data; alsa-utils: recorded spoken words (held-out speech); opus-tools and codec2:
  # the real codecs anytoken bench compares with; gcc: pip builds pesq (the bench extra) from source;
  # chromium and chromium-driver: the demos' browser tests
  # (Selenium drives them by path, nothing downloads a browser); Java (already on the
  # machine) runs pycocoevalcap's tokenizer. Failure to install only makes the dependent tests skip.
  packages="espeak-ng alsa-utils opus-tools codec2 gcc chromium chromium-driver"
  (apt-get update -qq && apt-get install -y -qq --no-install-recommends $packages) >/dev/null 2>&1 \
    || echo "run_tests.sh: apt-get install failed; tests needing $packages will skip"
fi
scripts/install.sh dev 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pytest "$@"
