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
"$python" - "$scratch/pairs" "$n" "$copies" <<'PY'
import os
import sys
from pathlib import Path

import cv2
import numpy as np
from skimage import data

from benchmarks import planted  # run from the repository root

root, count, copies = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.hubble_deep_field(), data.retina()]
rng = np.random.default_rng(0)
for side in ("lq", "hq"):
    (root / side).mkdir(parents=True)
for i in range(count):
    hq = cv2.resize(photos[i % len(photos)], (1024, 1024), interpolation=cv2.INTER_CUBIC)
    lq = planted.mixed(cv2.resize(hq, (512, 512), interpolation=cv2.INTER_AREA), rng)
    cv2.imwrite(str(root / "lq" / f"{i:05d}.jpg"), np.ascontiguousarray(lq[..., ::-1]))
    cv2.imwrite(str(root / "hq" / f"{i:05d}.png"), np.ascontiguousarray(hq[..., ::-1]))
    for copy in range(1, copies):  # hard links: the same bytes under another pair's name
        os.link(root / "lq" / f"{i:05d}.jpg", root / "lq" / f"{i:05d}-{copy}.jpg")
        os.link(root / "hq" / f"{i:05d}.png", root / "hq" / f"{i:05d}-{copy}.png")
PY
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
