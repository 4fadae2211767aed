#!/usr/bin/env bash
# A headless-Chromium screenshot of an HTML page (e.g. the study report), to check it as a reader sees it.
# The browser runs with no network: a page that needs one shows it as missing parts.
#   scripts/screenshot.sh results/study/artifacts/report/report.html /tmp/report.png [width] [height]
# Needs Chromium (Debian: apt-get install -y chromium).
set -euo pipefail
page=$(realpath "$1"); out=$(realpath -m "$2"); width=${3:-1280}; height=${4:-16000}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome) ||
  { echo "no Chromium found: apt-get install -y chromium" >&2; exit 1; }
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --proxy-server=127.0.0.1:9 \
  --window-size="$width,$height" --screenshot="$out" "file://$page" 2>/dev/null
echo "$out"
