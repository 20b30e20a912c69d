"""Bad and odd inputs: each bad one is one clear line, never a traceback; odd but valid
images (16-bit, CMYK, alpha, palette, EXIF-rotated) predict like the plain photo."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT
from emorec.cli import main
from emorec.errors import EmorecError
from emorec.imageio import read_image


@pytest.fixture(autouse=True)
def _yunet(yunet_path, monkeypatch):
    monkeypatch.setenv("EMOREC_YUNET", str(yunet_path))


@pytest.fixture(scope="module")
def face_img(images_dir):
    return read_image(images_dir / "single_face.jpg")


@pytest.fixture(scope="module")
def good(images_dir):
    return images_dir / "single_face.jpg"


def predict(capsys, *args):
    rc = main(["predict", *map(str, args)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out.splitlines(), err.splitlines()


def assert_skipped(capsys, model, bad, good, reason):
    """The bad file gets one stderr line; the good one beside it is still predicted."""
    rc, out, err = predict(capsys, bad, good, "--model", model)
    assert rc == 1  # some input failed; the rest is still written
    assert len(err) == 1, err
    assert err[0].startswith(f"emorec predict: skipped {bad}: ") and reason in err[0]
    assert len(out) == 2 and out[1].startswith(f"{good}  1  ")


def predict_json(capsys, model, path):
    rc, out, err = predict(capsys, path, "--model", model, "--json")
    assert rc == 0 and err == []
    return json.loads("\n".join(out))["results"][0]["faces"]


# --- bad files: skipped with one line, the rest goes on -----------------------------

def test_zero_byte_file(tmp_path, capsys, tiny_onnx, good):
    bad = tmp_path / "empty.jpg"
    bad.touch()
    assert_skipped(capsys, tiny_onnx, bad, good, "empty file")


def test_text_file_named_jpg(tmp_path, capsys, tiny_onnx, good):
    bad = tmp_path / "notes.jpg"
    bad.write_text("these are not pixels\n")
    assert_skipped(capsys, tiny_onnx, bad, good, "not an image")


def test_truncated_jpeg(tmp_path, capsys, tiny_onnx, good):
    bad = tmp_path / "cut.jpg"
    data = good.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    assert_skipped(capsys, tiny_onnx, bad, good, "truncated")


def _png_bomb(path, side: int) -> None:
    """A 1-bit PNG of side x side pixels that is a few KB on disk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + b"\x00" * ((side + 7) // 8)  # filter byte + one bit per pixel
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_png_decompression_bomb(tmp_path, capsys, tiny_onnx, good):
    bad = tmp_path / "bomb.png"
    _png_bomb(bad, 20_000)  # 400 M pixels, past Pillow's own limit
    assert bad.stat().st_size < 100_000
    assert_skipped(capsys, tiny_onnx, bad, good, "too large")
    mid = tmp_path / "big.png"
    _png_bomb(mid, 8_000)  # 64 M pixels: under Pillow's limit, over ours
    assert_skipped(capsys, tiny_onnx, mid, good, "too large")


def test_one_pixel_image(tmp_path, capsys, tiny_onnx, good):
    bad = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (128, 0, 0)).save(bad)
    assert_skipped(capsys, tiny_onnx, bad, good, "too small")


def test_unreadable_video(tmp_path, capsys, tiny_onnx, good):
    bad = tmp_path / "clip.mp4"
    bad.write_text("not a video")
    assert_skipped(capsys, tiny_onnx, bad, good, "video")


# --- usage errors: one line, exit 2 -------------------------------------------------

def usage_error(capsys, *args) -> str:
    rc, out, err = predict(capsys, *args)
    assert rc == 2 and out == []
    assert len(err) == 1 and err[0].startswith("emorec predict: error: "), err
    return err[0]


def test_directory_where_a_file_is_expected(tmp_path, capsys, tiny_onnx, good):
    assert "directory" in usage_error(capsys, good, "--model", tmp_path)
    assert "--output" in usage_error(capsys, good, "--model", tiny_onnx, "--output", tmp_path)
    with pytest.raises(EmorecError, match="is a directory"):
        read_image(tmp_path)
    script = subprocess.run([sys.executable, "infer_single.py", "--image", str(tmp_path), "--model", str(tiny_onnx)],
                            capture_output=True, text=True, cwd=ROOT)
    assert script.returncode == 2 and script.stdout == ""
    assert script.stderr.splitlines() == [f"infer_single.py: error: {tmp_path}: is a directory, expected an image file"]


def test_missing_model_file(tmp_path, capsys, good):
    assert "model file not found" in usage_error(capsys, good, "--model", tmp_path / "nope.onnx")


def test_model_that_is_not_onnx(tmp_path, capsys, good):
    fake = tmp_path / "model.onnx"
    fake.write_text("definitely not protobuf")
    assert "not a valid ONNX model" in usage_error(capsys, good, "--model", fake)


def test_model_for_other_classes(capsys, tiny_onnx7, good):
    msg = usage_error(capsys, good, "--model", tiny_onnx7)  # 7 FER classes vs the default 5
    assert "ACTIVE_CLASSES" in msg and "disgust" in msg
    # saying which classes the model has makes it fine
    rc, out, _ = predict(capsys, good, "--model", tiny_onnx7,
                         "--set", "ACTIVE_CLASSES=angry,disgust,fear,happy,neutral,sad,surprise")
    assert rc == 0 and len(out) == 2


def test_no_traceback_in_a_real_process(tmp_path, tiny_onnx, good, yunet_path):
    empty, text = tmp_path / "a.jpg", tmp_path / "b.png"
    empty.touch()
    text.write_text("hello")
    run = subprocess.run([sys.executable, "-m", "emorec", "predict", str(empty), str(text), str(good),
                          "--model", str(tiny_onnx)], capture_output=True, text=True,
                         env={**os.environ, "EMOREC_YUNET": str(yunet_path)})
    assert run.returncode == 1
    assert "Traceback" not in run.stderr and len(run.stderr.splitlines()) == 2
    assert run.stdout.splitlines()[1].startswith(f"{good}  1  ")


# --- odd but valid images predict like the plain photo ------------------------------

def check_same_face(capsys, model, path, reference_box):
    faces = predict_json(capsys, model, path)
    assert len(faces) == 1
    x, y, w, h = faces[0]["box"]
    rx, ry, rw, rh = reference_box
    assert abs(x - rx) < 0.1 * rw and abs(y - ry) < 0.1 * rh and abs(w - rw) < 0.15 * rw


@pytest.fixture(scope="module")
def reference_box(face_img, yunet_path):
    from emorec.detect import YuNetDetector

    return YuNetDetector(yunet_path).detect(face_img)[0][0]


def test_16bit_png(tmp_path, capsys, tiny_onnx, face_img, reference_box):
    gray = np.asarray(Image.fromarray(face_img).convert("L"), dtype=np.uint16) * 257
    path = tmp_path / "deep.png"
    Image.fromarray(gray).save(path)
    assert Image.open(path).mode.startswith("I")
    assert np.abs(read_image(path)[..., 0].astype(int) - gray // 257).max() <= 1
    check_same_face(capsys, tiny_onnx, path, reference_box)


def test_cmyk_jpeg(tmp_path, capsys, tiny_onnx, face_img, reference_box):
    path = tmp_path / "print.jpg"
    Image.fromarray(face_img).convert("CMYK").save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    assert np.abs(read_image(path).astype(int) - face_img).mean() < 8
    check_same_face(capsys, tiny_onnx, path, reference_box)


def test_rgba_png(tmp_path, capsys, tiny_onnx, face_img, reference_box, images_dir):
    rgba = np.dstack([face_img, np.full(face_img.shape[:2], 255, np.uint8)])
    rgba[:40, :40, 3] = 0  # a transparent corner
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(path)
    img = read_image(path)
    assert img.shape == face_img.shape and (img[:40, :40] == 255).all()  # composited on white
    check_same_face(capsys, tiny_onnx, path, reference_box)
    assert len(predict_json(capsys, tiny_onnx, images_dir / "Image_with_alpha.png")) == 1


def test_palette_png(tmp_path, capsys, tiny_onnx, face_img, reference_box):
    path = tmp_path / "palette.png"
    Image.fromarray(face_img).convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(path)
    assert Image.open(path).mode == "P"
    check_same_face(capsys, tiny_onnx, path, reference_box)


def test_exif_rotated_jpeg(tmp_path, capsys, tiny_onnx, face_img, reference_box):
    """Stored on its side with the Orientation tag that turns it upright: the face is found
    where it is in the upright photo."""
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(face_img).transpose(Image.Transpose.ROTATE_90).save(path, exif=exif.tobytes(), quality=95)
    assert Image.open(path).size == (face_img.shape[0], face_img.shape[1])  # stored sideways
    img = read_image(path)
    assert img.shape == face_img.shape and np.abs(img.astype(int) - face_img).mean() < 8
    check_same_face(capsys, tiny_onnx, path, reference_box)


# --- files that cannot be read at all ------------------------------------------------

def test_unreadable_file_costs_one_line(tmp_path, capsys, tiny_onnx, good, monkeypatch):
    from pathlib import Path

    bad = tmp_path / "locked.jpg"
    bad.write_bytes(good.read_bytes())
    real = Path.read_bytes

    def deny(self):  # tests run as root in CI, where chmod 000 still reads
        if self.name == "locked.jpg":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", deny)
    assert_skipped(capsys, tiny_onnx, bad, good, "cannot read (Permission denied)")


def test_link_loops_in_a_training_folder(tmp_path, good):
    from emorec.data.dataset import load_split

    d = tmp_path / "split" / "train" / "happy"
    d.mkdir(parents=True)
    (d / "a.jpg").write_bytes(good.read_bytes())
    (d / "self.jpg").symlink_to(d / "self.jpg")  # a file link to itself
    (d / "loop").symlink_to(d)  # a folder link to its parent
    data = load_split(tmp_path / "split", "train", ["happy", "sad"], 48, True, progress=False)
    assert len(data) == 1 and data.skipped == 1 and data.paths == [str(d / "a.jpg")]


def test_exif_warnings_stay_quiet(tmp_path, face_img, recwarn):
    import struct

    from PIL import Image as PILImage

    # one IFD entry (Make) whose data lies past the end of the file: Pillow warns when reading it
    tiff = (b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHII", 0x010F, 2, 100, 5000)
            + struct.pack("<I", 0))
    path = tmp_path / "exif.jpg"
    PILImage.fromarray(face_img).save(path, exif=b"Exif\x00\x00" + tiff)
    assert read_image(path).shape == face_img.shape
    assert [str(w.message) for w in recwarn] == []
