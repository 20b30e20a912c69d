"""Teacher targets for distillation: a trained model's (or ensemble's) probabilities on a
split's training faces, written as the split's ``votes.csv``. A student trained with
``SOFT_LABELS: true`` on that split then learns the teacher's outputs, the way it learns
FER+ annotator votes; validation and test keep the folder labels.
"""
from __future__ import annotations

from pathlib import Path


from emorec.config import Config
from emorec.data.votes import VOTES_FILE, write_votes
from emorec.errors import EmorecError


def write_teacher_votes(cfg: Config, model_path: Path, force: bool = False, tta_flip: bool = True,
                        batch_size: int = 256) -> dict:
    """Teacher probabilities (flip-averaged by default) for ``<DATA_DIR>/train`` -> ``votes.csv``."""
    from emorec.data.dataset import load_split
    from emorec.evaluation.evaluate import load_model

    data_dir = Path(cfg.data_dir)
    out = data_dir / VOTES_FILE
    if out.exists() and not force:
        raise EmorecError(f"{out} exists (annotator votes or an earlier teacher); use --force to replace it")
    if not Path(model_path).is_file():
        raise EmorecError(f"teacher model not found: {model_path}")
    teacher = load_model(Path(model_path))
    classes = teacher.classes
    data = load_split(data_dir, "train", classes, teacher.img_size, teacher.grayscale, cfg.cache_dir)
    probs = teacher.probs(data.images.numpy(), batch_size, tta_flip)
    rows = [{"path": Path(path).relative_to(data_dir).as_posix(), **{c: f"{v:.6f}" for c, v in zip(classes, row)}}
            for path, row in zip(data.paths, probs)]
    write_votes(out, rows, ["path", *classes])
    agree = float((probs.argmax(1) == data.labels.numpy()).mean())
    return {"votes": str(out), "images": len(data), "classes": classes, "teacher": str(model_path),
            "teacher_agrees_with_labels": agree}
