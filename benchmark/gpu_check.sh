#!/usr/bin/env bash
# The GPU performance check of issue 5, in one go (about 5 minutes on one H100/H200-class GPU):
#   1. ViT-B/16 RGMIM pretraining and fine-tuning images/s at 224 px (paper profile, bf16 autocast), with
#      achieved FLOP/s as a share of the GPU's bf16 matmul peak measured by the same command, and the
#      speed-up over lightly's MAE example pipeline (PNG files, PIL, DataLoader, fp32) run interleaved;
#   2. the same with torch.compile, to see what compiling buys.
# Usage: bash benchmark/gpu_check.sh [OUT_DIR]   (PYTHON=... picks the interpreter; default: python)
# Writes OUT_DIR/{gpu.txt,bench-paper.{txt,json},bench-paper-compiled.{txt,json}}; paste the tables into the
# README's Performance section.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python}
out=${1:-gpu-check}
mkdir -p "$out"
# 600 phantom images: a train pool of 480 holds one batch of 256; the cache builds in seconds
common=(--profile paper --method rgmim --cache-dir "$out/cache" --set data.phantom_count=600)

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$out/gpu.txt"
timeout 300 "$python" -m benchmark bench "${common[@]}" --steps 20 --warmup 5 --compare-reference \
    --json "$out/bench-paper.json" | tee "$out/bench-paper.txt"
timeout 300 "$python" -m benchmark bench "${common[@]}" --steps 20 --warmup 5 --set runtime.compile=true \
    --json "$out/bench-paper-compiled.json" | tee "$out/bench-paper-compiled.txt"
