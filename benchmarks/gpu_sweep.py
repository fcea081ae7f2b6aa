"""Tuning sweep of the Triton SSIM kernel on a GPU: tile size, warps, input layout.

    python -m benchmarks.gpu_sweep [OUT_DIR]

The batch of ``ssim_peers.py`` (8 real photos, HQ 1024 px, LQ 512 px) at both analysis
sizes, with and without the 8x8 tile grid. Each configuration is timed with CUDA events
(median of 50 launches after 5 warm-ups) and checked against the float64 torch reference.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import torch

from benchmarks.ssim_peers import BATCH, FACTORS, HQ, LQ, peer, torch_planes
from ggtqc.kernels.ssim import check_inputs, ssim_torch
from ggtqc.kernels.ssim_triton import ssim_triton


def median_ms(fn, reps: int = 50) -> float:
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main(out: Path) -> None:
    lq_cl = torch.from_numpy(LQ).cuda().permute(0, 3, 1, 2)  # channels-last, as decoded
    hq_cl = torch.from_numpy(HQ).cuda().permute(0, 3, 1, 2)
    rows = []
    for label, factor in FACTORS.items():
        for grid in (None, 8):
            geometry = check_inputs(lq_cl, hq_cl, factor, grid)
            reference = ssim_torch(lq_cl, hq_cl, geometry, dtype=torch.float64)
            for layout in ("channels_last", "contiguous"):
                for max_tile, warps in ((32, 2), (32, 4), (64, 4), (64, 8)):

                    def call(layout=layout, max_tile=max_tile, warps=warps, geometry=geometry):
                        lq, hq = (lq_cl, hq_cl) if layout == "channels_last" else (lq_cl.contiguous(), hq_cl.contiguous())
                        return ssim_triton(lq, hq, geometry, max_tile=max_tile, num_warps=warps)

                    got = call()
                    diff = max(
                        float((got.ssim.double() - reference.ssim).abs().max()),
                        float((got.structure.double() - reference.structure).abs().max()),
                        float((got.structure_tiles.double() - reference.structure_tiles).abs().max()) if grid else 0.0,
                    )
                    ms = median_ms(call)
                    rows.append(dict(size=label, grid=grid, layout=layout, max_tile=max_tile, warps=warps, ms_per_pair=ms / BATCH, max_abs_diff=diff))
                    print(f"{label} grid={grid} {layout:13s} tile<={max_tile} warps={warps}: {ms / BATCH:.4f} ms/pair  diff {diff:.1e}", flush=True)
        for name in ("torchmetrics", "pytorch_msssim"):
            metric = peer(name)
            ms = median_ms(lambda metric=metric, factor=factor: metric(*torch_planes(lq_cl, hq_cl, factor)))
            rows.append(dict(size=label, peer=name, ms_per_pair=ms / BATCH))
            print(f"{label} peer {name}: {ms / BATCH:.4f} ms/pair", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps({"gpu": torch.cuda.get_device_name(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "gpu-out"))
