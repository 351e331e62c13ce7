"""Image reconstruction metrics (torchmetrics'): PSNR and SSIM per image, of images in ``[0, 1]``."""

from __future__ import annotations

import torch


def _pair(reference: torch.Tensor, estimate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both as float ``[B, C, H, W]`` (the estimate clamped to ``[0, 1]``); ValueError if shapes differ."""
    ref, est = torch.as_tensor(reference).float(), torch.as_tensor(estimate).float()
    ref, est = (ref[None], est[None]) if ref.dim() == 3 else (ref, est)
    if ref.shape != est.shape or ref.dim() != 4 or ref.numel() == 0:
        raise ValueError(f"image metrics need two equal non-empty [B, C, H, W] batches, got "
                         f"{tuple(ref.shape)} and {tuple(est.shape)}")
    return ref, est.clamp(0, 1)


def psnr(reference: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
    """PSNR in dB ``[B]`` of each estimate against its reference (``[B, C, H, W]`` or ``[C, H, W]``)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    ref, est = _pair(reference, estimate)
    return peak_signal_noise_ratio(est, ref, data_range=1.0, reduction="none", dim=(1, 2, 3))


def ssim(reference: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
    """SSIM ``[B]`` (Gaussian window 11, sigma 1.5) of each estimate against its reference."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    ref, est = _pair(reference, estimate)
    return structural_similarity_index_measure(est, ref, data_range=1.0, reduction="none")
