"""Augmentation presets on whole batches of float tensors in [0, 1].

Everything that changes outside the dataset is simulated here: head pose and crop
(rotation, zoom, translation, flip in one affine warp; turns out of the image plane as a
perspective warp), lighting (brightness, contrast, gamma), cheap cameras (down-and-up resize
blur, sensor noise, JPEG) and occlusion (random erasing). Warps are one grid_sample per
batch, far cheaper than per-image PIL transforms; only JPEG goes image by image.
Random draws come from the CPU generator ``g`` (the same numbers on any device) and then
move to the batch's device.
"""
from __future__ import annotations

import math
from typing import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from emorec.models.predict import to_input


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=g) * (hi - lo) + lo


def geometric(x: torch.Tensor, g: torch.Generator, *, rot: float, zoom: float, trans: float,
              flip: bool) -> torch.Tensor:
    """Rotation (degrees), zoom, translation and a random mirror in one affine warp."""
    n = x.shape[0]
    angle = _uniform(n, -rot, rot, g) * math.pi / 180.0
    scale = _uniform(n, 1.0 - zoom, 1.0 + zoom, g)
    tx = _uniform(n, -trans, trans, g) * 2.0  # grid coords span [-1, 1]
    ty = _uniform(n, -trans, trans, g) * 2.0
    flip = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([
        torch.stack([cos * flip, -sin, tx], dim=1),
        torch.stack([sin * flip, cos, ty], dim=1),
    ], dim=1)
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def perspective(x: torch.Tensor, g: torch.Generator, *, strength: float) -> torch.Tensor:
    """A head turned left/right or up/down: a projective warp whose horizontal and vertical
    tilts are drawn per image from [-strength, strength] (0.2 shrinks one side by about a fifth)."""
    n, size = x.shape[0], x.shape[-1]
    tilt_x = _uniform(n, -strength, strength, g).view(n, 1, 1)
    tilt_y = _uniform(n, -strength, strength, g).view(n, 1, 1)
    pos = (torch.arange(size) + 0.5) / size * 2 - 1  # pixel centres in grid coords
    v, u = torch.meshgrid(pos, pos, indexing="ij")
    depth = 1 + tilt_x * u + tilt_y * v  # > 0 for strength < 0.5 (the config's range)
    grid = torch.stack([u / depth, v / depth], dim=-1)
    return F.grid_sample(x, grid.to(x.device), mode="bilinear", padding_mode="reflection", align_corners=False)


def photometric(x: torch.Tensor, strength: float, g: torch.Generator) -> torch.Tensor:
    """Brightness, contrast and gamma, each drawn per image within ``strength``."""
    n, s = x.shape[0], strength
    shape = (n, 1, 1, 1)
    brightness = _uniform(n, -s / 2, s / 2, g).view(shape).to(x.device)
    contrast = _uniform(n, 1 - s, 1 + s, g).view(shape).to(x.device)
    gamma = torch.exp(_uniform(n, -s, s, g)).view(shape).to(x.device)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * contrast + mean + brightness).clamp(0, 1)
    return x.clamp_min(1e-6) ** gamma


def blur(x: torch.Tensor, prob: float, g: torch.Generator) -> torch.Tensor:
    """Down-and-up resize on a random subset: faces from low-resolution cameras."""
    pick = (torch.rand(x.shape[0], generator=g) < prob).to(x.device)
    if not pick.any():
        return x
    size = x.shape[-1]
    low = int(torch.randint(max(12, size // 8), max(13, size // 2), (1,), generator=g))
    small = F.interpolate(x[pick], size=(low, low), mode="area")
    x = x.clone()
    x[pick] = F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
    return x


def noise(x: torch.Tensor, max_std: float, g: torch.Generator) -> torch.Tensor:
    """Gaussian noise, its std drawn per image from [0, max_std]: dim light, small sensors."""
    std = _uniform(x.shape[0], 0.0, max_std, g).view(-1, 1, 1, 1)
    return (x + torch.randn(x.shape, generator=g).mul_(std).to(x.device)).clamp_(0, 1)


def jpeg(x: torch.Tensor, prob: float, g: torch.Generator, *, quality: tuple[int, int] = (15, 60)) -> torch.Tensor:
    """JPEG round trip at a quality drawn per image, on a random subset: web photos and messengers."""
    pick = torch.nonzero(torch.rand(x.shape[0], generator=g) < prob).flatten()
    qualities = torch.randint(quality[0], quality[1] + 1, (x.shape[0],), generator=g)
    if not len(pick):
        return x
    faces = (x[pick].detach().cpu().permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    out = np.stack([cv2.imdecode(cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, int(q)])[1],
                                 cv2.IMREAD_UNCHANGED).reshape(face.shape)
                    for face, q in zip(faces, qualities[pick])])
    x = x.clone()
    x[pick] = torch.from_numpy(out).permute(0, 3, 1, 2).to(x.device, x.dtype) / 255
    return x


def erase(x: torch.Tensor, prob: float, g: torch.Generator) -> torch.Tensor:
    """Random erasing (Zhong et al. 2020): one rectangle of 2-25 % of the area, aspect 1:3-3:1,
    filled with a random gray, on a random subset: hands, masks, glasses, hair."""
    n, size = x.shape[0], x.shape[-1]
    area = _uniform(n, 0.02, 0.25, g)
    aspect = torch.exp(_uniform(n, -math.log(3), math.log(3), g))
    h = (area * aspect).sqrt().clamp(max=1.0)
    w = (area / aspect).sqrt().clamp(max=1.0)
    y0, x0 = torch.rand(n, generator=g) * (1 - h), torch.rand(n, generator=g) * (1 - w)
    pos = (torch.arange(size) + 0.5) / size
    inside_y = (pos >= y0[:, None]) & (pos < (y0 + h)[:, None])  # (n, size)
    inside_x = (pos >= x0[:, None]) & (pos < (x0 + w)[:, None])
    pick = torch.rand(n, generator=g) < prob
    mask = (inside_y[:, :, None] & inside_x[:, None, :] & pick[:, None, None]).unsqueeze(1)
    fill = torch.rand(n, generator=g).view(-1, 1, 1, 1)
    return torch.where(mask.to(x.device), fill.to(x.device), x)


def create_transform(*, use_aug: bool, aug_rot: float, aug_zoom: float, aug_trans: float, aug_flip: bool,
                     aug_perspective: float, color_jitter: float, aug_blur: float, aug_noise: float,
                     aug_jpeg: float, aug_erase: float) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """The training preset, ``transform(x_uint8, g)`` -> augmented float batch in [0, 1]; the
    keywords are the config's augment section: ``create_transform(**cfg.section("augment"))``."""

    def transform(x_uint8: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        x = to_input(x_uint8)
        if not use_aug:
            return x
        x = geometric(x, g, rot=aug_rot, zoom=aug_zoom, trans=aug_trans, flip=aug_flip)
        if aug_perspective > 0:
            x = perspective(x, g, strength=aug_perspective)
        if color_jitter > 0:
            x = photometric(x, color_jitter, g)
        if aug_blur > 0:
            x = blur(x, aug_blur, g)
        if aug_noise > 0:
            x = noise(x, aug_noise, g)
        if aug_jpeg > 0:
            x = jpeg(x, aug_jpeg, g)
        if aug_erase > 0:
            x = erase(x, aug_erase, g)
        return x

    return transform
