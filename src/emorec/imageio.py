"""Robust image reading shared by data preparation, training and inference.

Every failure becomes one ``EmorecError`` line: missing path, directory, empty or
non-image file, truncated data, decompression bombs. Odd but valid images (EXIF
rotation, 16-bit, CMYK, palette, alpha) are normalised to 8-bit RGB.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from emorec.errors import EmorecError

ImageSource = Union[str, os.PathLike, bytes, BinaryIO]

# The one list of image file types every stage reads (data, training, predict, the app's quiz).
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".pgm", ".ppm")
MAX_PIXELS = 50_000_000  # below Pillow's own bomb limit (89 M); 50 MP covers modern phones
MIN_SIDE = 8
# For servers (the API, the app): JPEGs larger than DECODE_PIXELS decode reduced; images of other
# formats decode whole, at up to 8 bytes a pixel (16-bit, alpha), so above FULL_DECODE_PIXELS
# (a 4000x3000 PNG) they are refused before decoding: two requests stay under 512 MB.
DECODE_PIXELS = 4_000_000
FULL_DECODE_PIXELS = 12_000_000


def _open(src: ImageSource, name: str, decode_pixels: int | None = None,
          full_decode_pixels: int | None = None) -> Image.Image:
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if path.is_dir():
            raise EmorecError(f"{name}: is a directory, expected an image file")
        if not path.exists():
            raise EmorecError(f"{name}: no such file")
        try:
            if path.stat().st_size == 0:
                raise EmorecError(f"{name}: empty file (0 bytes)")
            data = path.read_bytes()
        except OSError as e:  # no read permission, a symlink loop, a file gone meanwhile
            raise EmorecError(f"{name}: cannot read ({e.strerror or type(e).__name__})") from None
    elif isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        if not data:
            raise EmorecError(f"{name}: empty file (0 bytes)")
    else:
        try:
            data = src.read()
        except OSError as e:
            raise EmorecError(f"{name}: cannot read ({e.strerror or type(e).__name__})") from None
        if not data:
            raise EmorecError(f"{name}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's EXIF and metadata warnings are not the user's business
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise EmorecError(f"{name}: image too large ({w}x{h} = {w * h:,} pixels, limit {MAX_PIXELS:,})")
            if full_decode_pixels and w * h > full_decode_pixels and img.format != "JPEG":
                # only JPEG decodes reduced; a PNG, WebP or TIFF is decoded whole, at up to 8 bytes
                # a pixel (16-bit, alpha), so its size is bounded before it is decoded
                raise EmorecError(f"{name}: image too large to decode ({w}x{h} = {w * h:,} pixels, limit "
                                  f"{full_decode_pixels:,} for {img.format or 'this format'}; JPEGs are decoded reduced)")
            if decode_pixels and w * h > decode_pixels and img.format == "JPEG":
                # JPEG decodes at 1/2, 1/4 or 1/8 per side, to the size at least asked for: asking
                # half the side lands between a quarter of decode_pixels and decode_pixels
                k = (decode_pixels / (w * h)) ** 0.5 / 2
                img.draft("RGB", (max(1, int(w * k)), max(1, int(h * k))))
            img.load()
    except EmorecError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise EmorecError(f"{name}: image too large (decompression bomb guard)") from None
    except UnidentifiedImageError:
        raise EmorecError(f"{name}: not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise EmorecError(f"{name}: corrupt or truncated image ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    return img


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # a band of rows at a time: the whole 49 MP 16-bit image in float64 took 1.5 GB
        w, h = img.size
        band = lambda r: np.asarray(img.crop((0, r, w, min(h, r + 256))), np.float32)
        wide = img.mode.startswith("I;16") or max(float(band(r).max()) for r in range(0, h, 256)) > 255
        scale = np.float32(255.0 / (65535.0 if wide else 255.0))
        out = np.empty((h, w), np.uint8)
        for r in range(0, h, 256):
            out[r:r + 256] = np.clip(band(r) * scale + np.float32(0.5), 0, 255)
        return Image.fromarray(out, "L").convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, img).convert("RGB")
    return img.convert("RGB")


def read_image(src: ImageSource, name: str | None = None, decode_pixels: int | None = None,
               full_decode_pixels: int | None = None) -> np.ndarray:
    """Any image source -> upright 8-bit RGB array (H, W, 3). ``decode_pixels``: a JPEG larger
    than that is decoded reduced (by 2, 4 or 8 per side); ``full_decode_pixels``: an image of
    another format larger than that is refused before decoding. Both bound a server's memory."""
    if name is None:
        name = str(src) if isinstance(src, (str, os.PathLike)) else "image"
    img = _open(src, name, decode_pixels, full_decode_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Corrupt EXIF data" and the like
            img = ImageOps.exif_transpose(img)
    except Exception:  # broken EXIF must not cost the picture
        pass
    img = _to_rgb(img)
    if min(img.size) < MIN_SIDE:
        raise EmorecError(f"{name}: image too small ({img.size[0]}x{img.size[1]}, need at least {MIN_SIDE} px per side)")
    return np.array(img, dtype=np.uint8)  # one copy, owned by the caller


def find_files(root: str | os.PathLike, exts: tuple[str, ...] = IMAGE_EXTS) -> list[Path]:
    """Files under ``root`` with one of ``exts``, sorted; hidden folders skipped, symlinked
    folders not followed (no loops), unreadable folders passed over."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=lambda e: None):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in filenames if Path(f).suffix.lower() in exts and not f.startswith(".")]
    return sorted(found)
