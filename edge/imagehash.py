"""Tiny perceptual hashes (difference hash) for near-duplicate screening.

Lives in edge/ so ``doorguard enroll`` on the Pi can skip duplicate face crops
without the workstation toolchain; ``convert.data.dataset`` uses the same function
to keep copies of validation photos out of training.
"""

from __future__ import annotations

import cv2
import numpy as np


def dhash(image: np.ndarray, bits: int = 8) -> int:
    """64-bit difference hash of an RGB image (near-duplicate screening)."""
    g = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    small = cv2.resize(g, (bits + 1, bits), interpolation=cv2.INTER_AREA)
    diff = small[:, 1:] > small[:, :-1]
    return int(sum(1 << i for i, v in enumerate(diff.reshape(-1)) if v))


def hamming(a: int, b: int) -> int:
    """Number of differing bits of two hashes."""
    return (a ^ b).bit_count()
