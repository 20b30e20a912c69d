"""Detector, predictor and drawing on the real sample photos (../shared/images)."""
from __future__ import annotations

import subprocess
import sys
import threading

import cv2
import numpy as np
import pytest

from emorec.config import DEFAULT_CLASSES, Config
from emorec.errors import EmorecError
from emorec.imageio import read_image
from emorec import detect as detect_mod
from emorec.detect import HaarDetector, YuNetDetector, download_yunet, find_yunet
from emorec.inference.draw import annotate
from emorec.inference.predictor import Predictor, default_model_path
from emorec.modelfile import softmax
from emorec.inference.video import VideoWriter, read_frames
from emorec.preprocess import crop_face, face_to_array, to_float
from conftest import small_split

EXPECTED_FACES = {"multi_face.jpg": 5, "single_face.jpg": 1, "astronaut.png": 1, "BWPictureHuman.jpg": 1,
                  "chelsea_cat.png": 0, "coffee.png": 0, "free-mountain-vector-01.jpg": 0}


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    return inter / (aw * ah + bw * bh - inter)


@pytest.fixture(scope="module")
def yunet(yunet_path):
    return YuNetDetector(yunet_path)


@pytest.fixture(scope="module")
def predictor(tiny_onnx, yunet_path):
    return Predictor.from_path(tiny_onnx, detector_path=yunet_path)


@pytest.fixture(scope="module")
def photos(images_dir):
    return {name: read_image(images_dir / name) for name in EXPECTED_FACES}


# --- detection ----------------------------------------------------------------------

@pytest.mark.parametrize("name", list(EXPECTED_FACES))
def test_yunet_face_counts(yunet, photos, name):
    found = yunet.detect(photos[name])
    assert len(found) == EXPECTED_FACES[name]
    h, w = photos[name].shape[:2]
    for (x, y, bw, bh), score in found:
        assert 0 <= x and 0 <= y and x + bw <= w and y + bh <= h
        assert score >= 0.6


def test_haar_finds_the_single_face(photos, yunet):
    found = HaarDetector().detect(photos["single_face.jpg"])
    assert len(found) == 1
    assert iou(found[0][0], yunet.detect(photos["single_face.jpg"])[0][0]) > 0.4


def test_downscaled_detection_maps_boxes_back(yunet_path, photos):
    """Boxes found on the shrunk photo land on the faces found at full size."""
    img = photos["multi_face.jpg"]
    small = YuNetDetector(yunet_path, max_side=320).detect(img)
    full = YuNetDetector(yunet_path, max_side=max(img.shape)).detect(img)
    assert len(small) == len(full) == 5
    for box, _ in small:
        assert max(iou(box, f) for f, _ in full) > 0.6


def test_detection_runs_on_the_shrunk_image(yunet_path, photos):
    det = YuNetDetector(yunet_path, max_side=320)
    det.detect(photos["BWPictureHuman.jpg"])  # 2560x1912
    assert max(det._size) == 320


@pytest.fixture(scope="module")
def fer_faces(fer2013_zip, tmp_path_factory) -> list[np.ndarray]:
    """80 real 48 px FER2013 PrivateTest crops (16 of each default class)."""
    split = small_split(fer2013_zip, tmp_path_factory.mktemp("fer"), {"train": 0, "val": 0, "test": 16})
    return [read_image(f) for f in sorted((split / "test").glob("*/*.jpg"))]


def test_small_images_are_enlarged_for_detection(yunet_path, fer_faces):
    """A face filling a 48 px crop is what YuNet misses at native size (24 % of FER2013 test);
    enlarged to DET_MIN_SIDE it finds nearly all, and the boxes land back on the crop."""
    native = YuNetDetector(yunet_path, min_side=0)
    enlarged = YuNetDetector(yunet_path)
    found_native = sum(len(native.detect(img)) == 1 for img in fer_faces)
    found = [enlarged.detect(img) for img in fer_faces]
    assert max(enlarged._size) == 224
    assert sum(len(f) == 1 for f in found) >= 0.95 * len(fer_faces) > found_native + 5
    for dets in found:
        for (x, y, w, h), _ in dets:
            assert 0 <= x and 0 <= y and x + w <= 48 and y + h <= 48 and h >= 24


def test_min_face_size_and_score_threshold(yunet_path, photos):
    img = photos["multi_face.jpg"]  # faces are ~100 px wide
    assert YuNetDetector(yunet_path, min_face_size=150).detect(img) == []
    strict = YuNetDetector(yunet_path, score_threshold=0.99).detect(img)
    assert len(strict) < 5


def test_faces_are_ordered_left_to_right(yunet, photos):
    xs = [box[0] for box, _ in yunet.detect(photos["multi_face.jpg"])]
    assert xs == sorted(xs)


# --- finding the YuNet file (never downloads from the internet) --------------------

@pytest.fixture
def no_yunet_anywhere(tmp_path, monkeypatch):
    monkeypatch.delenv("EMOREC_YUNET", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(detect_mod, "PACKAGED_YUNET", tmp_path / "site-packages" / detect_mod.YUNET_FILE)
    return tmp_path / ".cache" / "emorec" / detect_mod.YUNET_FILE


def test_yunet_ships_in_the_package(monkeypatch, tmp_path):
    """pip install, then predict: no download, no variable (the detector is package data)."""
    import hashlib

    monkeypatch.delenv("EMOREC_YUNET", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(detect_mod, "YUNET_URL", "http://127.0.0.1:9/yunet.onnx")  # no network
    path = find_yunet()
    assert path == detect_mod.PACKAGED_YUNET and path.is_file()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == detect_mod.YUNET_SHA256
    assert not (tmp_path / ".cache").exists()


def test_relative_yunet_path_is_named_in_full(monkeypatch, tmp_path, yunet_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "y.onnx").write_bytes(yunet_path.read_bytes())
    monkeypatch.setenv("EMOREC_YUNET", "w/y.onnx")
    assert find_yunet() == tmp_path / "w" / "y.onnx"
    monkeypatch.setenv("EMOREC_YUNET", "w/none.onnx")
    with pytest.raises(EmorecError, match=f"not found: {tmp_path}/w/none.onnx"):
        find_yunet()


def test_find_yunet_explicit_env_and_cache(yunet_path, no_yunet_anywhere, monkeypatch):
    assert find_yunet(yunet_path) == yunet_path
    with pytest.raises(EmorecError, match="not found"):
        find_yunet(no_yunet_anywhere.parent / "missing.onnx")
    monkeypatch.setenv("EMOREC_YUNET", str(yunet_path))
    assert find_yunet() == yunet_path
    monkeypatch.delenv("EMOREC_YUNET")
    no_yunet_anywhere.parent.mkdir(parents=True)
    no_yunet_anywhere.write_bytes(yunet_path.read_bytes())
    assert find_yunet() == no_yunet_anywhere  # without the packaged copy: the user cache


def test_yunet_file_that_is_not_a_model(tmp_path):
    junk = tmp_path / "yunet.onnx"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(EmorecError, match="not a valid YuNet"):
        YuNetDetector(junk)


def test_no_yunet_and_no_download_suggests_haar(no_yunet_anywhere, monkeypatch):
    monkeypatch.setattr(detect_mod, "YUNET_URL", "http://127.0.0.1:9/yunet.onnx")  # nothing listens there
    with pytest.raises(EmorecError, match="--detector haar"):
        find_yunet()
    assert not no_yunet_anywhere.exists()


def test_download_checks_sha256(yunet_path, tmp_path):
    dest = tmp_path / "cache" / "yunet.onnx"
    assert download_yunet(dest, url=yunet_path.as_uri()) == dest
    assert dest.read_bytes() == yunet_path.read_bytes()
    bad = tmp_path / "other.onnx"
    bad.write_bytes(b"not the model")
    with pytest.raises(EmorecError, match="sha256"):
        download_yunet(tmp_path / "b.onnx", url=bad.as_uri())
    assert not (tmp_path / "b.onnx").exists()


# --- predictor ----------------------------------------------------------------------

def test_import_does_not_load_torch():
    code = "import sys, emorec.inference.predictor, emorec.commands.predict; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_predict_batch_matches_detections(predictor, photos):
    names = list(EXPECTED_FACES)
    results = predictor.predict([photos[n] for n in names])
    assert [len(r) for r in results] == [EXPECTED_FACES[n] for n in names]
    for faces in results:
        for f in faces:
            assert set(f.probs) == set(DEFAULT_CLASSES)
            assert sum(f.probs.values()) == pytest.approx(1.0, abs=1e-5)
            assert f.label == max(f.probs, key=f.probs.get)
            assert f.confidence == f.probs[f.label]
            d = f.to_dict()
            assert d["box"] == list(f.box) and all(isinstance(v, int) for v in d["box"])


def test_predict_uses_the_training_preprocessing(predictor, photos):
    """predict() == crop_face(margin from the model) -> face_to_array -> to_float -> ORT -> softmax."""
    import onnxruntime as ort

    img = photos["multi_face.jpg"]
    faces = predictor.predict([img])[0]
    info = predictor.info
    crops = [face_to_array(crop_face(img, f.box, info.face_margin), info.img_size, info.grayscale) for f in faces]
    sess = ort.InferenceSession(str(predictor.model_path), providers=["CPUExecutionProvider"])
    expected = softmax(sess.run(["logits"], {"input": to_float(np.stack(crops))})[0])
    got = np.array([[f.probs[c] for c in info.classes] for f in faces])
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_predict_crops_tells_images_apart(predictor):
    dark, bright = np.full((60, 50, 3), 20, np.uint8), np.full((48, 48), 235, np.uint8)
    probs = predictor.predict_crops([dark, bright, dark])
    assert probs.shape == (3, len(DEFAULT_CLASSES))
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert not np.allclose(probs[0], probs[1], atol=1e-3)
    np.testing.assert_allclose(probs[0], probs[2])
    assert predictor.predict_crops([]).shape == (0, len(DEFAULT_CLASSES))


def test_no_detection_means_the_whole_image(tiny_onnx, photos):
    img = photos["coffee.png"]
    p = Predictor.from_path(tiny_onnx, detector="none")
    faces = p.predict([img])[0]
    assert len(faces) == 1 and faces[0].box == (0, 0, img.shape[1], img.shape[0])
    assert p.detect(img) == [((0, 0, img.shape[1], img.shape[0]), 1.0)]
    np.testing.assert_allclose([faces[0].probs[c] for c in p.classes], p.predict_crops([img])[0], atol=1e-6)


def test_detect_false_skips_the_detector(predictor, photos):
    faces = predictor.predict([photos["multi_face.jpg"]], detect=False)[0]
    assert len(faces) == 1 and faces[0].box[:2] == (0, 0)


def test_threads_and_optimisation_reach_the_session(tiny_onnx, yunet_path):
    import onnxruntime as ort

    p = Predictor.from_path(tiny_onnx, detector="none", threads=2)
    opts = p._sess.get_session_options()
    assert opts.intra_op_num_threads == 2
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL


def test_predictor_is_thread_safe(predictor, photos):
    imgs = [photos["multi_face.jpg"], photos["astronaut.png"], photos["single_face.jpg"]]
    expected = [[f.to_dict() for f in faces] for faces in predictor.predict(imgs)]
    got, errors = {}, []

    def work(i):
        try:
            got[i] = [[f.to_dict() for f in predictor.predict([img])[0]] for img in imgs]
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(v == expected for v in got.values())


def test_model_errors_are_one_line(tmp_path, tiny_onnx, tiny_onnx7, make_tiny):
    cases = {
        tmp_path / "missing.onnx": "not found",
        tmp_path: "directory",
    }
    junk = tmp_path / "junk.onnx"
    junk.write_text("this is not a model")
    cases[junk] = "not a valid ONNX model"
    bare = make_tiny(tmp_path / "bare.onnx")
    cases[bare] = "no emorec metadata"
    for path, msg in cases.items():
        with pytest.raises(EmorecError, match=msg) as e:
            Predictor.from_path(path, detector="none")
        assert "\n" not in str(e.value)
    with pytest.raises(EmorecError, match="ACTIVE_CLASSES"):
        Predictor.from_path(tiny_onnx7, detector="none", expected_classes=DEFAULT_CLASSES)
    # same classes in another order are fine: labels come from the model itself
    p = Predictor.from_path(tiny_onnx, detector="none", expected_classes=list(reversed(DEFAULT_CLASSES)))
    assert p.classes == DEFAULT_CLASSES


@pytest.fixture
def make_tiny():
    """A tiny ONNX model without emorec metadata."""
    def make(path):
        import onnx

        from conftest import make_tiny_onnx

        make_tiny_onnx(path, DEFAULT_CLASSES)
        model = onnx.load(str(path))
        del model.metadata_props[:]
        onnx.save(model, str(path))
        return path
    return make


def test_default_model_path(tmp_path, monkeypatch):
    from emorec.config import SHIPPED_MODELS, SHIPPED_MODELS_DIR
    from emorec.inference.predictor import resolve_model

    monkeypatch.setitem(SHIPPED_MODELS, "7class", "emotion_7class.onnx")  # a second one, by name
    monkeypatch.chdir(tmp_path)
    assert default_model_path(Config(model_path=tmp_path / "x.onnx")) == tmp_path / "x.onnx"
    # the default is the shipped 5-class model, wherever the command runs
    assert default_model_path() == default_model_path(Config()) == SHIPPED_MODELS_DIR / "best_model.onnx"
    assert default_model_path().is_file()
    assert resolve_model("7class") == SHIPPED_MODELS_DIR / "emotion_7class.onnx"
    assert default_model_path(Config(model_path="7class")) == resolve_model("7class")
    # a model trained and exported into the run folder is never picked up silently
    (tmp_path / "runs/default/models").mkdir(parents=True)
    (tmp_path / "runs/default/models/best_model.onnx").write_bytes(b"x")
    assert default_model_path(Config()) == SHIPPED_MODELS_DIR / "best_model.onnx"
    with pytest.raises(EmorecError, match="model file not found: .*nope.onnx .*: 5class, 7class"):
        Predictor.from_path("nope.onnx", detector="none")


def test_from_config_takes_its_settings(tiny_onnx, yunet_path):
    cfg = Config(yunet_path=yunet_path, det_score_threshold=0.7, min_face_size=30, det_max_side=256,
                 det_min_side=128, ort_threads=2)
    p = Predictor.from_config(cfg, tiny_onnx)
    assert p.detector_name == "yunet" and p.detector.min_face_size == 30
    assert (p.detector.min_side, p.detector.max_side) == (128, 256)
    assert p._sess.get_session_options().intra_op_num_threads == 2
    with pytest.raises(EmorecError, match="ACTIVE_CLASSES"):
        Predictor.from_config(Config(active_classes=["happy", "sad"]), tiny_onnx, detector="none")


# --- crops, drawing, video ----------------------------------------------------------

def test_annotate_draws_on_each_face(predictor, photos):
    img = photos["multi_face.jpg"]
    faces = predictor.predict([img])[0]
    out = annotate(img, faces, top_k=2, numbered=True)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(img, photos["multi_face.jpg"])  # the input is left alone
    changed = np.any(out != img, axis=2)
    for x, y, w, h in (f.box for f in faces):
        assert changed[y + h // 2, x]  # the left edge of every box is drawn
    assert not changed[img.shape[0] - 5, img.shape[1] - 5]


def test_video_frames_every_n(tmp_path, photos):
    path = tmp_path / "clip.avi"
    writer = VideoWriter(path)
    frame = cv2.resize(photos["single_face.jpg"], (160, 160))
    for _ in range(10):
        writer.write(frame, 10.0)
    writer.close()
    kept = [f for f in read_frames(path, every=4) if f.keep]
    assert [f.index for f in kept] == [0, 4, 8]
    assert kept[1].time_s == pytest.approx(0.4) and kept[0].rgb.shape == (160, 160, 3)
    assert len(list(read_frames(path, every=4, decode_all=True))) == 10
    with pytest.raises(EmorecError, match="use one of"):
        VideoWriter(tmp_path / "x.gif")
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video")
    with pytest.raises(EmorecError):
        list(read_frames(fake))


def test_shipped_model_is_package_data_too(tmp_path, monkeypatch):
    """A plain `pip install .` has no models/ beside it: the package's copy is used."""
    from emorec.config import PACKAGED_MODELS_DIR, SHIPPED_MODELS, SHIPPED_MODELS_DIR
    from emorec.inference import predictor as predictor_mod

    for name in SHIPPED_MODELS.values():
        assert (PACKAGED_MODELS_DIR / name).read_bytes() == (SHIPPED_MODELS_DIR / name).read_bytes()
    monkeypatch.setattr(predictor_mod, "SHIPPED_MODELS_DIR", tmp_path)  # no checkout
    assert predictor_mod.resolve_model("5class") == PACKAGED_MODELS_DIR / "best_model.onnx"
    assert Predictor.from_path(None, detector="none").classes == DEFAULT_CLASSES


def test_a_named_shipped_model_brings_its_classes():
    """ACTIVE_CLASSES guards model files; a shipped model named by --model or MODEL_PATH is not
    checked against it, and the default model still is."""
    from emorec.config import FER_CLASSES

    assert Predictor.from_config(Config(), "7class", detector="none").classes == FER_CLASSES
    assert Predictor.from_config(Config(model_path="7class"), detector="none").classes == FER_CLASSES
    with pytest.raises(EmorecError, match="ACTIVE_CLASSES"):
        Predictor.from_config(Config(active_classes=FER_CLASSES), detector="none")


def _stripes(size: int) -> np.ndarray:
    """A sharp face-sized crop: one-pixel stripes, detail no 48 px training face has."""
    img = np.zeros((size, size), np.uint8)
    img[:, ::2] = 255
    img[: size // 2] //= 2
    return img


def test_source_size_softens_large_crops_as_training_faces_were():
    sharp = _stripes(192)
    soft = face_to_array(sharp, 96, True, source_size=48)
    small = cv2.resize(sharp, (48, 48), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(soft, face_to_array(small, 96, True))  # reduced, then enlarged like FER
    assert not np.array_equal(soft, face_to_array(sharp, 96, True))
    # A face no larger than the source size (every FER face) is untouched by it.
    fer_face = cv2.resize(sharp, (48, 48), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(face_to_array(fer_face, 96, True, 48), face_to_array(fer_face, 96, True))
    colour = np.dstack([sharp, sharp[::-1], sharp.T])
    assert face_to_array(colour, 64, False, 48).shape == (3, 64, 64)


def test_predictor_uses_the_source_size_written_in_the_model(tmp_path):
    from conftest import make_tiny_onnx
    from emorec.modelfile import ModelInfo

    plain = Predictor.from_path(make_tiny_onnx(tmp_path / "plain.onnx", DEFAULT_CLASSES, img_size=96),
                                detector="none")
    soft = Predictor.from_path(make_tiny_onnx(tmp_path / "soft.onnx", DEFAULT_CLASSES, img_size=96, source_size=48),
                               detector="none")
    assert (plain.info.source_size, soft.info.source_size) == (0, 48)
    crop = np.dstack([_stripes(192)] * 3)
    for pred, size in ((plain, 0), (soft, 48)):
        fed = []
        run = pred.predict_arrays
        pred.predict_arrays = lambda arrays, run=run: fed.append(arrays) or run(arrays)
        probs = pred.predict_crops([crop])
        np.testing.assert_array_equal(fed[0][0], face_to_array(crop, 96, True, size))
        assert probs.shape == (1, len(DEFAULT_CLASSES))
    # Files written before SOURCE_SIZE existed read as 0 (no reduction).
    old = '{"classes": ["happy", "sad"], "img_size": 48, "grayscale": true, "face_margin": 0.0}'
    assert ModelInfo.from_json(old).source_size == 0


def test_labels_cover_no_other_label_and_no_face(yunet_path):
    """examples/multi_face.jpg: five faces side by side, labels numbered as the CLI draws them; no
    label covers another label or a face, all stay inside the photo, and their letters are at least
    13 px tall in the photo as the app shows it (700 px wide)."""
    from emorec.inference.draw import label_layout
    from conftest import ROOT

    img = read_image(ROOT / "examples" / "multi_face.jpg")
    faces = Predictor.from_path("5class", detector_path=yunet_path).predict([img])[0]
    assert len(faces) == 5
    for top_k in (1, 3):
        layout = label_layout(img.shape, faces, top_k, numbered=True)
        rects = [r for _, r, _ in layout]
        boxes = [(x, y, x + w, y + h) for x, y, w, h in (f.box for f in faces)]
        inter = lambda a, b: max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
        for i, r in enumerate(rects):
            assert 0 <= r[0] and 0 <= r[1] and r[2] <= img.shape[1] and r[3] <= img.shape[0]
            assert all(inter(r, q) == 0 for j, q in enumerate(rects) if j != i), (top_k, i, rects)
            if top_k == 1:  # three labels per face cannot all fit beside five close faces
                assert all(inter(r, b) == 0 for b in boxes), (i, r)
        assert min(th for _, _, th in layout) * 700 / img.shape[1] >= 13
