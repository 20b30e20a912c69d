"""A torch network's class probabilities on uint8 faces: validation during training, export's
parity check and the evaluation of checkpoints all go through here."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from emorec.preprocess import PIXEL_MAX


def to_input(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 batch -> float batch in [0, 1], as ``preprocess.to_float`` does for ONNX."""
    return x_uint8.float().div_(PIXEL_MAX)


@torch.inference_mode()
def predict_probs(model, images: torch.Tensor, batch_size: int = 256, tta_flip: bool = False) -> np.ndarray:
    """uint8 ``(N, C, S, S)`` -> ``(N, K)`` probabilities; ``tta_flip`` averages with the mirror image."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for chunk in images.split(batch_size):
        x = to_input(chunk.to(device)).contiguous(memory_format=torch.channels_last)
        p = F.softmax(model(x), dim=1)
        if tta_flip:
            p = (p + F.softmax(model(x.flip(-1)), dim=1)) / 2
        out.append(p.cpu())
    return torch.cat(out).numpy()
