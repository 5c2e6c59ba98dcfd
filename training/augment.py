"""Augmentation applied to a whole batch at once, a different random transform per image.

torchvision's ``RandomAffine`` draws one transform per call, so per-image transforms would mean a
Python loop over 128 images per step: on two CPU cores that costs as much as the network. One
``affine_grid`` + ``grid_sample`` call transforms the batch on whatever device it lives on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def mirror(images: torch.Tensor, generator: torch.Generator | None = None, share: float = 0.5) -> torch.Tensor:
    """Images [N, C, H, W] with a random ``share`` of them flipped left to right."""
    n = images.shape[0]
    mirrored = (torch.rand(n, generator=generator) < share).to(images.device).view(n, 1, 1, 1)
    return torch.where(mirrored, images.flip(-1), images)


@dataclass(frozen=True)
class AffineAugment:
    degrees: float = 12.0
    scale: tuple[float, float] = (0.88, 1.12)
    shear_degrees: float = 8.0
    translate: float = 0.09  # share of the image side

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images [N, C, H, W] (normalised; the fill is their minimum, the background) -> same shape."""
        n = images.shape[0]
        device, dtype = images.device, images.dtype

        def uniform(low: float, high: float) -> torch.Tensor:
            return torch.rand(n, generator=generator).mul(high - low).add(low).to(device, dtype)

        angle = uniform(-self.degrees, self.degrees) * (math.pi / 180)
        shear = uniform(-self.shear_degrees, self.shear_degrees) * (math.pi / 180)
        scale = uniform(*self.scale)
        tx = uniform(-self.translate, self.translate) * 2  # grid coordinates span [-1, 1]
        ty = uniform(-self.translate, self.translate) * 2
        cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear)
        # Inverse map (output -> input coordinates): rotation then shear, divided by scale.
        theta = torch.stack(
            [
                torch.stack([cos, -sin + cos * tan, tx], dim=-1),
                torch.stack([sin, cos + sin * tan, ty], dim=-1),
            ],
            dim=1,
        ) / torch.stack([scale, scale, torch.ones_like(scale)], dim=-1).unsqueeze(1)
        theta[:, :, 2] = torch.stack([tx, ty], dim=-1)
        background = images.amin(dim=(1, 2, 3), keepdim=True)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        shifted = F.grid_sample(images - background, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return shifted + background


@dataclass(frozen=True)
class GarmentAugment:
    """Fashion-MNIST augmentation, batched: a left-right mirror (garments, shoes and bags are
    as plausible mirrored; digits are not), a shift of a pixel or two and a slight rescale (the
    preprocessing already fixes scale and position, and garments are photographed upright, so
    no rotation or shear), and random erasing of one rectangle, which makes the network use the
    whole garment rather than one telling patch."""

    flip: float = 0.5
    affine: AffineAugment = AffineAugment(degrees=0.0, scale=(0.95, 1.05), shear_degrees=0.0, translate=0.06)
    erase: float = 0.5  # probability of erasing a rectangle
    erase_area: tuple[float, float] = (0.02, 0.12)  # share of the image it covers

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        n, _, height, width = images.shape
        device = images.device
        images = self.affine(mirror(images, generator, self.flip), generator)
        # One rectangle per image (aspect 1/2..2), filled with the background level.
        area = torch.empty(n).uniform_(*self.erase_area, generator=generator) * height * width
        aspect = torch.exp(torch.empty(n).uniform_(math.log(0.5), math.log(2.0), generator=generator))
        h = (area * aspect).sqrt().clamp(1, height).long()
        w = (area / aspect).sqrt().clamp(1, width).long()
        top = (torch.rand(n, generator=generator) * (height - h + 1)).long()
        left = (torch.rand(n, generator=generator) * (width - w + 1)).long()
        chosen = torch.rand(n, generator=generator) < self.erase
        rows = torch.arange(height).view(1, height, 1)
        cols = torch.arange(width).view(1, 1, width)
        box = ((rows >= top.view(n, 1, 1)) & (rows < (top + h).view(n, 1, 1))
               & (cols >= left.view(n, 1, 1)) & (cols < (left + w).view(n, 1, 1)) & chosen.view(n, 1, 1))
        background = images.amin(dim=(1, 2, 3), keepdim=True)
        return torch.where(box.unsqueeze(1).to(device), background, images)
