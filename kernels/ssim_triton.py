"""The downsampled SSIM as one fused Triton kernel per batch.

Each program owns one part of the valid SSIM map of one pair (at most ``TILE - 10``
outputs a side, TILE at most 32). It reads the raw uint8 pixels under its part plus the
10-px window halo, pools them to luma in registers (exact integer channel sums in
float32), filters the five moments with the separable Gaussian written as two banded
matrix products (``Gv @ m @ Gh``, in IEEE float32), applies the SSIM and structure
formulas, and stores two partial sums. Parts are aligned to the tile grid, so one tiny
reduction afterwards gives per-pair and per-tile means, deterministically (no atomics).

Halos make neighbouring programs re-read up to ``(TILE / (TILE - 10))**2`` of their input
(2.1x at TILE 32), which the L2 cache serves; every byte comes from DRAM once. Small
programs win: at TILE 64 each held a dozen 64x64 float32 blocks and spilled registers,
3-10x slower on an H200 (benchmarks/README.md, "On a GPU").
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from ggtqc.kernels.ssim import C1, C2, C3, LUMA, RADIUS, WINDOW, Geometry, SSIMResult, gaussian_window, tile_bounds

MAX_TILE = 32  # up to 22 outputs a side per program; see the module docstring
LUMA_R = tl.constexpr(LUMA[0])
LUMA_G = tl.constexpr(LUMA[1])
LUMA_B = tl.constexpr(LUMA[2])
SSIM_C1 = tl.constexpr(C1)
SSIM_C2 = tl.constexpr(C2)
SSIM_C3 = tl.constexpr(C3)
TAPS = tl.constexpr(WINDOW)


@triton.jit
def _pooled_luma(ptr, stride_c, stride_h, stride_w, rows, cols, mask, BLOCK: tl.constexpr, TILE: tl.constexpr):
    """Luma of BLOCK x BLOCK means at plane positions rows x cols, as a [TILE, TILE] block."""
    red = tl.zeros((TILE, TILE), dtype=tl.float32)
    green = tl.zeros((TILE, TILE), dtype=tl.float32)
    blue = tl.zeros((TILE, TILE), dtype=tl.float32)
    for dy in range(BLOCK):
        row_offsets = (rows * BLOCK + dy).to(tl.int64)[:, None] * stride_h
        for dx in tl.static_range(BLOCK):
            offsets = row_offsets + (cols * BLOCK + dx).to(tl.int64)[None, :] * stride_w
            red += tl.load(ptr + offsets, mask=mask, other=0).to(tl.float32)
            green += tl.load(ptr + stride_c + offsets, mask=mask, other=0).to(tl.float32)
            blue += tl.load(ptr + 2 * stride_c + offsets, mask=mask, other=0).to(tl.float32)
    # The channel sums are exact integers in float32 (< 2**24); weight them once.
    scale = 1.0 / (BLOCK * BLOCK)
    return (LUMA_R * red + LUMA_G * green + LUMA_B * blue) * scale


@triton.jit
def _ssim_parts_kernel(
    lq_ptr, hq_ptr, taps_ptr, out_ptr,
    lq_sb, lq_sc, lq_sh, lq_sw,
    hq_sb, hq_sc, hq_sh, hq_sw,
    valid_h, valid_w, parts_y, parts_x,
    LQ_BLOCK: tl.constexpr, HQ_BLOCK: tl.constexpr, TILE: tl.constexpr,
):  # fmt: skip
    pair = tl.program_id(0)
    part_y = tl.program_id(1)
    part_x = tl.program_id(2)
    row0 = (part_y * valid_h + parts_y - 1) // parts_y
    row1 = ((part_y + 1) * valid_h + parts_y - 1) // parts_y
    col0 = (part_x * valid_w + parts_x - 1) // parts_x
    col1 = ((part_x + 1) * valid_w + parts_x - 1) // parts_x

    i = tl.arange(0, TILE)
    rows = row0 + i
    cols = col0 + i
    # Plane rows row0 .. row1 + 9 feed the outputs row0 .. row1 - 1.
    needed = (rows < row1 + TAPS - 1)[:, None] & (cols < col1 + TAPS - 1)[None, :]
    lq_base = lq_ptr + pair.to(tl.int64) * lq_sb
    hq_base = hq_ptr + pair.to(tl.int64) * hq_sb
    x = _pooled_luma(lq_base, lq_sc, lq_sh, lq_sw, rows, cols, needed, LQ_BLOCK, TILE)
    y = _pooled_luma(hq_base, hq_sc, hq_sh, hq_sw, rows, cols, needed, HQ_BLOCK, TILE)
    # Centre on mid-grey: the same covariances, less cancellation in float32.
    x = tl.where(needed, x - 128.0, 0.0)
    y = tl.where(needed, y - 128.0, 0.0)

    # Banded matrices of the separable window: out[r] = sum_t taps[t] * in[r + t].
    shift = i[None, :] - i[:, None]
    in_band = (shift >= 0) & (shift < TAPS)
    down = tl.load(taps_ptr + tl.where(in_band, shift, 0), mask=in_band, other=0.0)  # [out row, in row]
    across = tl.trans(down)  # [in col, out col]

    mx = tl.dot(tl.dot(down, x, input_precision="ieee"), across, input_precision="ieee")
    my = tl.dot(tl.dot(down, y, input_precision="ieee"), across, input_precision="ieee")
    xx = tl.dot(tl.dot(down, x * x, input_precision="ieee"), across, input_precision="ieee")
    yy = tl.dot(tl.dot(down, y * y, input_precision="ieee"), across, input_precision="ieee")
    xy = tl.dot(tl.dot(down, x * y, input_precision="ieee"), across, input_precision="ieee")

    vx = xx - mx * mx
    vy = yy - my * my
    cov = xy - mx * my
    mx += 128.0
    my += 128.0
    ssim = ((2.0 * mx * my + SSIM_C1) * (2.0 * cov + SSIM_C2)) / ((mx * mx + my * my + SSIM_C1) * (vx + vy + SSIM_C2))
    structure = (cov + SSIM_C3) / (tl.sqrt(tl.maximum(vx, 0.0) * tl.maximum(vy, 0.0)) + SSIM_C3)

    inside = (i < row1 - row0)[:, None] & (i < col1 - col0)[None, :]
    out = out_ptr + ((pair * parts_y + part_y) * parts_x + part_x) * 2
    tl.store(out, tl.sum(tl.sum(tl.where(inside, ssim, 0.0), axis=1), axis=0))
    tl.store(out + 1, tl.sum(tl.sum(tl.where(inside, structure, 0.0), axis=1), axis=0))


def partition(length: int, grid: int, max_tile: int = MAX_TILE) -> tuple[int, int]:
    """Parts along one axis (a multiple of ``grid``) and the TILE that holds one with its halo."""
    per_cell = math.ceil(length / grid)
    split = math.ceil(per_cell / (max_tile - 2 * RADIUS))
    parts = grid * split
    largest = math.ceil(length / parts) + 2 * RADIUS
    return parts, max(16, 1 << (largest - 1).bit_length())


def ssim_triton(
    lq: torch.Tensor, hq: torch.Tensor, geometry: Geometry, max_tile: int = MAX_TILE, num_warps: int | None = None
) -> SSIMResult:
    """``max_tile`` and ``num_warps`` are there for tuning sweeps (benchmarks/gpu_sweep.py)."""
    g = geometry
    vh, vw = g.valid
    grid = g.grid or 1
    parts_y, tile_y = partition(vh, grid, max_tile)
    parts_x, tile_x = partition(vw, grid, max_tile)
    tile = max(tile_y, tile_x)
    taps = torch.tensor(gaussian_window(), dtype=torch.float32, device=lq.device)
    partial = torch.empty(g.batch, parts_y, parts_x, 2, dtype=torch.float32, device=lq.device)
    _ssim_parts_kernel[(g.batch, parts_y, parts_x)](
        lq, hq, taps, partial,
        *lq.stride(), *hq.stride(),
        vh, vw, parts_y, parts_x,
        LQ_BLOCK=g.factor, HQ_BLOCK=g.factor * g.scale, TILE=tile,
        num_warps=num_warps or (8 if tile == 64 else 4),
    )  # fmt: skip
    partial = partial.double()
    ssim = partial[..., 0].sum(dim=(1, 2)) / (vh * vw)
    structure = partial[..., 1].sum(dim=(1, 2)) / (vh * vw)
    if g.grid is None:
        return SSIMResult(ssim.float(), structure.float())
    cells = partial.view(g.batch, grid, parts_y // grid, grid, parts_x // grid, 2).sum(dim=(2, 4))
    rows, cols = tile_bounds(vh, grid), tile_bounds(vw, grid)
    counts = torch.tensor(
        [[(rows[a + 1] - rows[a]) * (cols[b + 1] - cols[b]) for b in range(grid)] for a in range(grid)],
        dtype=torch.float64,
        device=lq.device,
    )
    tiles = cells / counts[None, :, :, None]
    return SSIMResult(ssim.float(), structure.float(), tiles[..., 0].float(), tiles[..., 1].float())
