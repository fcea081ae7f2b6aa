"""The ``hallucination`` filter's maps in torch, over a group of same-sized pairs.

Step for step the CPU path of ``ggtqc.plugins.hallucination`` (its module docstring says
what the maps mean), over ``[N, H, W]`` planes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ggtqc.kernels.planes import REFLECT, gaussian_blur, grey_opening, linear_resize, luma, noise_sigma, percentile, small_views
from ggtqc.plugins import hallucination as cpu  # its constants; the plugin imports this module only when it runs it


def _blur(planes: torch.Tensor, sigma: float) -> torch.Tensor:
    return gaussian_blur(planes, sigma, REFLECT)


@dataclass
class LocalStructure:
    x: torch.Tensor
    y: torch.Tensor
    vx: torch.Tensor
    vy: torch.Tensor
    cov: torch.Tensor
    gain2: torch.Tensor
    total: torch.Tensor

    @property
    def region(self) -> float:
        return cpu.REGION * max(self.x.shape[1:])


def local_structure(lq: torch.Tensor, hq: torch.Tensor, size: tuple[int, int]) -> LocalStructure:
    small_lq, small_hq = small_views(lq, hq, size)
    x, y = _blur(luma(small_lq), 0.7), _blur(luma(small_hq), 0.7)
    sigma = cpu.WINDOW_SIGMA
    mx, my = _blur(x, sigma), _blur(y, sigma)
    vx = (_blur(x * x, sigma) - mx * mx).clamp(min=0)
    vy = (_blur(y * y, sigma) - my * my).clamp(min=0)
    cov = _blur(x * y, sigma) - mx * my
    quarter = 0.25 * max(x.shape[1:])
    gain2 = (_blur(vy, quarter) / _blur(vx, quarter).clamp(min=1e-3)).clamp(0.25, 64.0)
    stabiliser = 0.1 * vy.mean(dim=(1, 2)) + 4.0 * percentile(gain2.flatten(1), 50) * noise_sigma(x) ** 2 + 1.0
    return LocalStructure(x, y, vx, vy, cov, gain2, vy + gain2 * vx + stabiliser[:, None, None])


def added_map(lq: torch.Tensor, hq: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    s = local_structure(lq, hq, size)
    added = (s.vy - s.cov * s.cov / s.vx.clamp(min=1e-3)).clamp(min=0) / s.total
    return _blur(added, s.region)


def darker_residual(x: torch.Tensor, y: torch.Tensor, sigma: float) -> torch.Tensor:
    mx, my = _blur(x, sigma), _blur(y, sigma)
    vy = (_blur(y * y, sigma) - my * my).clamp(min=0)
    slope = (_blur(x * y, sigma) - mx * my) / vy.clamp(min=1e-3)
    residual = (x - mx) - slope * (y - my)
    return 2.0 * _blur(residual.clamp(max=0) ** 2, cpu.WINDOW_SIGMA)


def removed_map(lq: torch.Tensor, hq: torch.Tensor, size: tuple[int, int], lq_shape: tuple[int, ...]) -> torch.Tensor:
    s = local_structure(lq, hq, size)
    width = max(cpu.SPECK, 2 * round(cpu.SPECK_LQ * max(s.x.shape[1:]) / max(lq_shape[:2]) / 2) + 1)  # speck_width

    def specks(plane: torch.Tensor) -> torch.Tensor:
        return plane - grey_opening(plane, width)

    x = s.x - (specks(s.x) - specks(s.y) / s.gain2.sqrt()).clamp(min=0)
    darker = (darker_residual(x, s.y, cpu.WINDOW_SIGMA) + darker_residual(x, s.y, cpu.COARSE_SIGMA) / cpu.COARSE_EXCESS) / 2
    headroom = (255.0 - _blur(x, cpu.WINDOW_SIGMA)).clamp(min=8.0) ** 2
    particle_level = percentile((darker / headroom).flatten(1), cpu.PARTICLE_PERCENTILE)
    lost = (darker - cpu.PARTICLE_ALLOWANCE * particle_level[:, None, None] * headroom).clamp(min=0) * s.gain2
    return _blur(lost / s.total, s.region)


def measure(lq: torch.Tensor, hq: torch.Tensor, added_size, removed_size, lq_shape) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The three scores (``[N]`` each) and the heatmaps ``[N, H, W]`` of a group, as ``Hallucination.measure``."""
    defaults = cpu.DEFAULTS
    added = added_map(lq, hq, added_size)
    removed = removed_map(lq, hq, removed_size, lq_shape)
    added_share = added / defaults["added"]
    removed_share = linear_resize(removed, tuple(added.shape[1:])) / defaults["removed"]
    replaced = (added_share * removed_share).sqrt()
    heatmap = torch.maximum(torch.maximum(added_share, removed_share), replaced / defaults["replaced"]) / 2
    scores = {
        "added": added.flatten(1).max(dim=1).values,
        "removed": removed.flatten(1).max(dim=1).values,
        "replaced": replaced.flatten(1).max(dim=1).values,
    }
    return scores, heatmap
