"""Compute kernels of ggtqc, each beside its torch reference (installed as ``ggtqc.kernels``)."""

from ggtqc.kernels.ssim import SSIMResult, downsampled_ssim, downsampled_ssim_terms

__all__ = ["SSIMResult", "downsampled_ssim", "downsampled_ssim_terms"]
