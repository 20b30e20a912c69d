"""The one configuration object that drives every stage.

Defaults < profile (TRAIN_MODE) < YAML file < command-line ``--set KEY=VALUE``.
Keys are case-insensitive, so the original design's names (``ACTIVE_CLASSES``,
``IMG_SIZE``, ``TRAIN_MODE`` ...) work in YAML and on the command line.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from emorec.errors import EmorecError

DEFAULT_CLASSES = ["angry", "fear", "happy", "sad", "surprise"]
# The models that ship with emorec, in the repository's models/ folder, picked by short name
# (`--model 5class`). Training and export write to run folders, never here unless forced.
SHIPPED_MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
SHIPPED_MODELS = {"5class": "best_model.onnx", "7class": "emotion_7class.onnx"}
# The same files inside the package (links into models/, copied into a wheel): a plain
# `pip install .` predicts without the repository beside it.
PACKAGED_MODELS_DIR = Path(__file__).resolve().parent / "assets"
DEFAULT_MODEL = "5class"
FER_CLASSES = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


def class_rows(classes: list[str], wanted: list[str], owner: str) -> list[int]:
    """Where each of ``wanted`` sits in ``classes`` (a model's outputs, a head's rows); a one-line
    error naming ``owner`` when some are not there."""
    missing = [c for c in wanted if c not in classes]
    if missing:
        raise EmorecError(f"{owner} has no class {', '.join(missing)} (its classes: {', '.join(classes)})")
    return [classes.index(c) for c in wanted]


@dataclass(frozen=True)
class Profile:
    """What TRAIN_MODE switches: run length, learning rates, fine-tuning depth."""

    epochs_stage1: int
    epochs_stage2: int
    lr_stage1: float
    lr_stage2: float
    finetune_layers: int  # last N backbone blocks unfrozen in stage 2 (-1: all)
    patience: int
    max_train_per_class: int | None  # cap on train images per class (None: all)
    max_eval_per_class: int | None  # cap on val images per class


PROFILES: dict[str, Profile] = {
    # Minutes on 2 CPU cores: checks that the pipeline runs and learns.
    "FAST_DEBUG": Profile(2, 1, 3e-3, 3e-4, 4, 2, 300, 100),
    # Tens of minutes on CPU: a usable model for development.
    "DEV_TRAIN": Profile(3, 6, 2e-3, 5e-4, 8, 3, 2000, None),
    # Hours on CPU (or minutes on a GPU): the shipped model.
    "FULL_TRAIN": Profile(5, 40, 2e-3, 3e-4, -1, 8, None, None),
}


MONITORS = ("val_macro_f1", "val_acc", "val_loss")
INT8_CALIBRATIONS = ("percentile", "minmax")
# Closed ranges of numeric keys: a value outside is a typo, caught when the config is built
# (IMG_SIZE=100000 would try to allocate tens of GiB; DROPOUT=5 fails deep inside torch).
_RANGES = {
    "img_size": (32, 1024), "batch_size": (1, 65536), "dropout": (0.0, 0.99), "aug_blur": (0.0, 1.0),
    "aug_erase": (0.0, 1.0), "aug_noise": (0.0, 0.5), "aug_rot": (0.0, 180.0), "aug_zoom": (0.0, 0.9),
    "aug_trans": (0.0, 0.5), "aug_perspective": (0.0, 0.4), "aug_jpeg": (0.0, 1.0), "color_jitter": (0.0, 1.0),
    "mixup_alpha": (0.0, 100.0), "cutmix_alpha": (0.0, 100.0),
    "cutmix_prob": (0.0, 1.0), "focal_gamma": (0.0, 10.0), "label_smoothing": (0.0, 0.99),
    "hard_label_weight": (0.0, 1.0), "weight_decay": (0.0, 10.0), "epochs_stage1": (0, 10000),
    "epochs_stage2": (0, 10000), "lr_stage1": (0.0, 10.0), "lr_stage2": (0.0, 10.0), "finetune_layers": (-1, 1000),
    "patience": (1, 10000), "max_train_per_class": (1, 10 ** 9), "max_eval_per_class": (1, 10 ** 9),
    "num_threads": (0, 1024), "max_minutes": (0.0, 10 ** 7), "near_dup_bits": (0, 64),
    "det_score_threshold": (0.0, 1.0), "face_margin": (0.0, 1.0), "min_face_size": (1, 100000),
    "det_max_side": (32, 8192), "det_min_side": (0, 8192), "ort_threads": (0, 1024),
    "source_size": (0, 1024), "class_weight_power": (0.0, 4.0), "int8_calib_images": (16, 100000),
    "seed": (0, 2 ** 32 - 1), "smooth_s": (0.0, 3600.0), "track_max_missing_s": (0.0, 3600.0),
}


# The keys, grouped by the stage that reads them. Users see one flat namespace (YAML keys,
# --set KEY=VALUE); library functions take a section's values as keyword arguments:
# ``create_transform(**cfg.section("augment"))``.
@dataclass
class PathsConfig:  # relative paths are relative to the working directory
    data_dir: Path = Path("data_split")
    models_dir: Path = Path("runs/default/models")  # checkpoints, exported ONNX, config.yaml
    reports_dir: Path = Path("runs/default/reports")
    cache_dir: Path = Path("~/.cache/emorec")  # decoded splits; a user folder, not the checkout
    weights_dir: Path | None = None  # ImageNet .pth files; also $EMOREC_WEIGHTS_DIR


@dataclass
class DataConfig:
    active_classes: list[str] = field(default_factory=lambda: list(DEFAULT_CLASSES))
    # folders, zips, kaggle:owner/name; in YAML also mappings {path, codes, pattern, crop, weight, ...}
    # (emorec.data.sources.SourceSpec)
    sources: list = field(default_factory=list)
    # Sources without class folders: a CSV in them with these columns gives each image's label.
    labels_image_column: str = "image"
    labels_label_column: str = "emotion"
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    keep_source_splits: bool = True  # reuse a source's own test/val split when it has one
    split_by_person: bool = True  # a source that names its people (a pattern's person field) is split by person
    follow_links: bool = False  # folder sources: read files through symbolic links (they may point outside)
    near_dup_bits: int = 0  # max Hamming distance of 64-bit average hashes counted as near duplicates


@dataclass
class ModelConfig:
    backbone: str = "mobilenet_v2"
    img_size: int = 112  # FER faces are 48 px: larger costs time for little gain on CPU
    grayscale: bool = True
    dropout: float = 0.2
    # Start from another emorec checkpoint (e.g. trained on other data or classes) instead
    # of ImageNet alone; the classifier is kept only when the classes match.
    init_from: Path | None = None
    # With INIT_FROM of other classes that include all of ours: start the head from its rows for
    # our classes (the source model's decisions among them) instead of a fresh head.
    init_head_rows: bool = False


@dataclass
class TrainConfig:
    train_mode: str = "DEV_TRAIN"  # the profile; the keys below left as None come from it
    epochs_stage1: int | None = None
    epochs_stage2: int | None = None
    lr_stage1: float | None = None
    lr_stage2: float | None = None
    finetune_layers: int | None = None
    patience: int | None = None
    max_train_per_class: int | None = None
    max_eval_per_class: int | None = None
    batch_size: int = 64
    balanced_sampling: bool = False  # natural class frequencies won every recipe since m5b
    use_class_weights: bool = False
    class_weight_power: float = 1.0  # weights = (inverse frequency) ** power; 0.5 is milder
    lr_schedule: str = "cosine"  # cosine | plateau
    weight_decay: float = 1e-4
    monitor: str = "val_acc"  # val_acc | val_macro_f1 | val_loss
    seed: int = 42
    num_threads: int = 0  # torch intra-op threads for training (0: library default)
    # Training device: auto (a CUDA GPU when torch sees one, else CPU) | cpu | cuda | cuda:N.
    # On a GPU the decoded split, augmentation and the model all live there, under bf16 autocast.
    device: str = "auto"
    max_minutes: float = 0.0  # stop training after the epoch that passes this (0: no limit)


@dataclass
class AugmentConfig:  # image-level, on whole batches (train/augment.py)
    use_aug: bool = True
    aug_rot: float = 15.0  # degrees
    aug_zoom: float = 0.15  # +- relative scale
    aug_trans: float = 0.1  # +- fraction of the image
    aug_flip: bool = True
    aug_perspective: float = 0.0  # max tilt of a perspective warp (heads turned out of the image plane)
    color_jitter: float = 0.3  # brightness/contrast strength
    aug_blur: float = 0.3  # probability of a down-up resize blur (low-resolution cameras)
    aug_noise: float = 0.0  # max std of Gaussian sensor noise (fraction of full scale), drawn per image
    aug_jpeg: float = 0.0  # probability of a JPEG round trip at quality 15-60 (web photos)
    aug_erase: float = 0.0  # probability of one erased rectangle (occlusion: hands, masks, glasses)


@dataclass
class MixConfig:  # batch-level (train/mix.py)
    use_mixup_stage1: bool = False
    use_mixup_stage2: bool = True
    mixup_alpha: float = 0.2
    cutmix_alpha: float = 1.0
    cutmix_prob: float = 0.3  # share of mixed batches that use CutMix instead of MixUp


@dataclass
class LossConfig:
    use_focal: bool = False
    focal_gamma: float = 2.0
    label_smoothing: float = 0.1
    # Train on the annotators' vote shares (FER+ votes.csv of the split) instead of one-hot
    # folder labels; validation and evaluation keep the folder (majority) labels.
    soft_labels: bool = False
    # With SOFT_LABELS: share of the folder label in each training target, the rest being the
    # votes (distillation's alpha: keep the dataset's own labels while learning a teacher's).
    hard_label_weight: float = 0.0


@dataclass
class ExportConfig:  # face_margin and source_size are written into the model file; inference reads them there
    face_margin: float = 0.0  # YuNet box squared, not grown: matches FER crops (measured: box = 0.98 of a FER face)
    # Reduce each crop to this size before enlarging it to IMG_SIZE, as the training faces
    # (FER's 48 px) were: a sharp photo crop then looks like them (0: resize directly).
    source_size: int = 0
    tta_flip: bool = False  # evaluation: average each face with its mirror image
    # Static int8 activation ranges from the calibration faces: percentile (99.999th, outliers
    # clipped) answers as the fp32 file does more often than minmax (studies/int8_agreement.md).
    int8_calibration: str = "percentile"  # percentile | minmax
    int8_calib_images: int = 1024  # training faces the int8 ranges are calibrated on


@dataclass
class InferConfig:
    model_path: Path | None = None  # an .onnx file or a shipped model's name (5class, 7class); None: 5class
    detector: str = "yunet"  # yunet | haar | none
    yunet_path: Path | None = None  # also $EMOREC_YUNET
    det_score_threshold: float = 0.6
    min_face_size: int = 20  # px; smaller detections are ignored
    det_max_side: int = 320  # photos are shrunk to this longest side for face detection (speed)
    det_min_side: int = 224  # smaller images (face crops) are enlarged to it: YuNet misses tiny-input faces (0: off)
    ort_threads: int = 1
    # Video: each person's emotions are averaged over about this many seconds (an exponential
    # time constant; 0: every frame as it is), and a face unseen this long gets a new track id.
    smooth_s: float = 0.5
    track_max_missing_s: float = 1.0


SECTIONS = {"paths": PathsConfig, "data": DataConfig, "model": ModelConfig, "train": TrainConfig,
            "augment": AugmentConfig, "mix": MixConfig, "loss": LossConfig, "export": ExportConfig,
            "infer": InferConfig}


@dataclass
class Config(InferConfig, ExportConfig, LossConfig, MixConfig, AugmentConfig, TrainConfig, ModelConfig, DataConfig,
             PathsConfig):
    """Every key, flat (``cfg.img_size``); ``cfg.section("model")`` gives one group as a dict."""

    # ------------------------------------------------------------------
    def __post_init__(self) -> None:
        self.resolve()

    def section(self, name: str) -> dict[str, Any]:
        """The keys of one section (``SECTIONS``) and their values, as keyword arguments."""
        return {f.name: getattr(self, f.name) for f in fields(SECTIONS[name])}

    @property
    def profile(self) -> Profile:
        return PROFILES[self.train_mode]

    @property
    def num_classes(self) -> int:
        return len(self.active_classes)

    @property
    def in_chans(self) -> int:
        return 1 if self.grayscale else 3

    def resolve(self) -> "Config":
        """Validate and fill profile-driven fields left as None."""
        self.train_mode = str(self.train_mode).upper()
        if self.train_mode not in PROFILES:
            raise EmorecError(f"unknown TRAIN_MODE {self.train_mode!r}; choose one of {', '.join(PROFILES)}")
        for f in fields(Profile):
            if getattr(self, f.name) is None:
                setattr(self, f.name, getattr(self.profile, f.name))
        classes = [str(c).strip().lower() for c in self.active_classes]
        if len(classes) < 2 or len(set(classes)) != len(classes):
            raise EmorecError(f"ACTIVE_CLASSES needs at least two distinct names, got {self.active_classes!r}")
        self.active_classes = classes
        if self.lr_schedule not in ("cosine", "plateau"):
            raise EmorecError(f"LR_SCHEDULE must be 'cosine' or 'plateau', got {self.lr_schedule!r}")
        if self.int8_calibration not in INT8_CALIBRATIONS:
            raise EmorecError(f"INT8_CALIBRATION must be one of {', '.join(INT8_CALIBRATIONS)}, "
                              f"got {self.int8_calibration!r}")
        if self.detector not in ("yunet", "haar", "none"):
            raise EmorecError(f"DETECTOR must be yunet, haar or none, got {self.detector!r}")
        if not 0 <= self.val_fraction < 1 or not 0 <= self.test_fraction < 1 or self.val_fraction + self.test_fraction >= 1:
            raise EmorecError("VAL_FRACTION and TEST_FRACTION must be in [0, 1) and sum to less than 1")
        if not (self.device in ("auto", "cpu", "cuda") or str(self.device).startswith("cuda:")):
            raise EmorecError(f"DEVICE must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.hard_label_weight and not self.soft_labels:
            raise EmorecError("HARD_LABEL_WEIGHT blends folder labels into votes; it needs SOFT_LABELS: true")
        if not 0 <= self.det_min_side <= self.det_max_side:
            raise EmorecError(f"DET_MIN_SIDE must be in [0, DET_MAX_SIDE={self.det_max_side}], got {self.det_min_side}")
        for f in fields(self):  # NaN and infinity pass every comparison below; refuse them first
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                raise EmorecError(f"{f.name.upper()} must be a finite number, got {v}")
        for key, (lo, hi) in _RANGES.items():
            v = getattr(self, key)
            if v is not None and not lo <= v <= hi:
                raise EmorecError(f"{key.upper()} must be in [{lo:g}, {hi:g}], got {v:g}")
        if self.monitor not in MONITORS:
            raise EmorecError(f"MONITOR must be one of {', '.join(MONITORS)}, got {self.monitor!r}")
        if not self.lr_stage1 > 0 or not self.lr_stage2 > 0:
            raise EmorecError(f"LR_STAGE1 and LR_STAGE2 must be positive, got {self.lr_stage1:g}, {self.lr_stage2:g}")
        return self

    # --- (de)serialisation -------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = str(v) if isinstance(v, Path) else v
        return out

    def save(self, path: str | os.PathLike) -> Path:
        import yaml

        from emorec.files import write_text

        return write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False), "config")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        return cls()._updated(data)

    def _updated(self, data: dict[str, Any]) -> "Config":
        known = {f.name: f for f in fields(self)}
        values = dataclasses.asdict(self)
        for key, raw in data.items():
            name = str(key).strip().lower()
            if name not in known:
                raise EmorecError(f"unknown config key {key!r}")
            values[name] = _coerce(name, raw)
        # Profile-driven fields stay None unless set, so a new TRAIN_MODE takes effect.
        for f in fields(Profile):
            if f.name not in {str(k).lower() for k in data} and getattr(self, f.name) == getattr(self.profile, f.name):
                values[f.name] = None
        return Config(**values)

    def with_overrides(self, overrides: dict[str, Any]) -> "Config":
        return self._updated(overrides)


def _coerce(name: str, raw: Any) -> Any:
    """Turn YAML/CLI values into the field's type; one clear line when impossible."""
    hints = typing.get_type_hints(Config)
    tp = hints[name]
    args = typing.get_args(tp)
    optional = type(None) in args
    if optional:
        tp = next(a for a in args if a is not type(None))
    if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("none", "null", "")):
        if optional:
            return None
        raise EmorecError(f"config key {name.upper()} cannot be empty")
    try:
        origin = typing.get_origin(tp)
        if tp is list:  # SOURCES: paths, or mappings kept as they are
            if isinstance(raw, str):
                raw = [s for s in raw.replace(",", " ").split() if s]
            if not isinstance(raw, list):
                raise ValueError(raw)
            return [x if isinstance(x, dict) else str(x) for x in raw]
        if origin is list:
            if isinstance(raw, str):
                raw = [s for s in raw.replace(",", " ").split() if s]
            return [str(x) for x in raw]
        if tp is bool:
            if isinstance(raw, bool):
                return raw
            s = str(raw).strip().lower()
            if s in ("1", "true", "yes", "on"):
                return True
            if s in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if tp is Path:
            return Path(str(raw))  # "~" is expanded where a path is opened, so records keep it
        if tp in (int, float, str):
            if tp is int and isinstance(raw, float) and not raw.is_integer():
                raise ValueError(raw)
            return tp(raw)
    except (TypeError, ValueError):
        pass
    else:
        return raw
    raise EmorecError(f"config key {name.upper()}: cannot use {raw!r} as {getattr(tp, '__name__', tp)}")


def parse_overrides(items: list[str] | None) -> dict[str, str]:
    """``["img_size=96", "ACTIVE_CLASSES=angry,happy"]`` -> dict."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise EmorecError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


MAX_BASE_DEPTH = 16  # base: files chained; recipes use one or two
MAX_CONFIG_BYTES = 1 << 20


def read_config_file(path: str | os.PathLike, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML file's keys, lower-cased; ``base: other.yaml`` (relative to the file) is read first
    and the file's own keys override it, so a recipe is a short diff of the one it grows from.
    YAML anchors and aliases are refused: a config has no use for them, and an alias bomb of a
    few hundred bytes expands to gigabytes."""
    path = Path(path)
    if not path.is_file():
        raise EmorecError(f"config file not found: {path}")
    if path.resolve() in _seen:
        raise EmorecError(f"config file {path}: its base: chain comes back to itself")
    if len(_seen) >= MAX_BASE_DEPTH:
        raise EmorecError(f"config file {path}: base: chain deeper than {MAX_BASE_DEPTH} files")
    import yaml

    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise EmorecError(f"config file {path}: over {MAX_CONFIG_BYTES:,} bytes; not a config")
        text = path.read_text(encoding="utf-8")
        if any(isinstance(e, (yaml.AliasEvent,)) or getattr(e, "anchor", None) for e in yaml.parse(text)):
            raise EmorecError(f"config file {path}: YAML anchors and aliases (& and *) are not supported")
        data = yaml.safe_load(text) or {}
    except OSError as e:
        raise EmorecError(f"config file {path}: cannot read it ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise EmorecError(f"config file {path} is not text (UTF-8 YAML expected)") from None
    except yaml.YAMLError as e:
        raise EmorecError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise EmorecError(f"config file {path} must hold a mapping of KEY: value")
    data = {str(k).strip().lower(): v for k, v in data.items()}
    base = data.pop("base", None)
    if base is None:
        return data
    return {**read_config_file(path.parent / str(base), (*_seen, path.resolve())), **data}


def load_config(path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Build the config: defaults, then a YAML file (and its ``base:`` files), then overrides.

    The file and the overrides are applied as one update, so a profile value written in
    the file (EPOCHS_STAGE2: 40) survives a TRAIN_MODE given with --set.
    """
    merged = read_config_file(path) if path is not None else {}
    merged.update({str(k).strip().lower(): v for k, v in (overrides or {}).items()})
    return Config()._updated(merged)


def config_json(cfg: Config) -> str:
    return json.dumps(cfg.to_dict(), indent=2)
