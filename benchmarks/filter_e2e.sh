#!/usr/bin/env bash
# End-to-end throughput of `ggtqc filter`: N pairs (HQ 1024 px PNG, LQ 512 px JPEG degraded by
# planted.mixed) written to a scratch folder, then the CLI timed per device and filter set,
# decoding and writing included. Writes nothing into the repo.
#   PYTHON   the interpreter with ggtqc installed (default .venv/bin/python)
#   N        pairs generated (default 512); COPIES: each is linked in that many times under
#            other names (default 1), so a run long enough to hide worker start-up costs
#            no more generation; DEVICES (default "cpu", e.g. "cuda cpu");
#   PROCESSES the --processes values to time (default "1", e.g. "1 4 16")
#   PLUGINS  the --plugins values to time (default "ssim all,-clip,-iqa all,-clip")
#   CLIP_RANDOM=1  where no CLIP weights can be fetched: a ViT-B-32 with random weights is
#            saved where the clip filter looks ($GGTQC_CACHE, in the scratch folder), so
#            "all" can be timed; speed only, its clip scores mean nothing
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
n=${N:-512}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
copies=${COPIES:-1}
"$python" -m benchmarks.throughput_pairs "$scratch/pairs" "$n" "$copies"
n=$((n * copies))
if [ "${CLIP_RANDOM:-0}" = 1 ]; then
    export GGTQC_CACHE="$scratch/cache"
    mkdir -p "$GGTQC_CACHE/clip"
    "$python" -c "import sys, torch, open_clip; torch.save(open_clip.create_model('ViT-B-32').state_dict(), sys.argv[1])" \
        "$GGTQC_CACHE/clip/ViT-B-32-laion2b_s34b_b79k.bin"
fi
echo "$n pairs, $(nproc) cores; wall: the command, start-up included; run: the scoring loop (summary.json)"
for device in ${DEVICES:-cpu}; do
    for processes in ${PROCESSES:-1}; do
        for plugins in ${PLUGINS:-ssim all,-clip,-iqa all,-clip}; do
            start=$(date +%s.%N)
            "$python" -m ggtqc filter "$scratch/pairs" --plugins "$plugins" --device "$device" --processes "$processes" \
                --all-scores --out "$scratch/qc" --fresh -q >/dev/null
            end=$(date +%s.%N)
            "$python" - "$start" "$end" "$device" "$processes" "$plugins" "$scratch/qc/summary.json" "$n" <<'PY'
import json, sys
start, end, device, processes, plugins, summary, n = sys.argv[1:]
wall, run = float(end) - float(start), json.load(open(summary))["this_run"]["seconds"]
print(f"{device:5s} {processes:>2s} proc  {plugins:16s} wall {wall:7.2f} s  run {run:7.2f} s  {1000 * run / int(n):7.2f} ms/pair")
PY
        done
    done
done
