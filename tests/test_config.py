"""Config files: ``base:`` chains, sections, and every recipe in configs/ loads."""
from dataclasses import fields
from pathlib import Path

import pytest

from emorec.config import SECTIONS, Config, load_config
from emorec.errors import EmorecError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_recipe_loads_names_its_command_and_is_a_short_diff(path):
    cfg = load_config(path)
    text = path.read_text()
    # the command that rebuilds it: a training recipe, or the sources of a data split
    assert any(f"emorec {c} --config configs/{path.name}" in text for c in ("train", "data prepare"))
    assert cfg.models_dir.parts[0] == "runs"  # never the shipped models/ folder
    if f"emorec train --config configs/{path.name}" in text:  # a recipe is a short diff of its base
        assert len([ln for ln in text.splitlines() if ln and not ln.startswith("#")]) <= 16


def test_base_is_read_first_and_the_file_overrides_it(tmp_path):
    (tmp_path / "a.yaml").write_text("IMG_SIZE: 96\nEPOCHS_STAGE2: 3\nTRAIN_MODE: FULL_TRAIN\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yaml").write_text("base: ../a.yaml\nEPOCHS_STAGE2: 5\n")
    cfg = load_config(tmp_path / "sub" / "b.yaml", {"seed": 7})
    assert (cfg.img_size, cfg.epochs_stage2, cfg.train_mode, cfg.seed) == (96, 5, "FULL_TRAIN", 7)
    assert cfg.lr_stage2 == 3e-4  # FULL_TRAIN's profile value, from the base's TRAIN_MODE


def test_base_loops_and_missing_bases_are_one_line(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(EmorecError, match="comes back to itself"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(EmorecError, match="not found: .*nowhere.yaml"):
        load_config(tmp_path / "c.yaml")


def test_sections_partition_the_keys():
    cfg = Config()
    names = [k for s in SECTIONS for k in cfg.section(s)]
    assert sorted(names) == sorted(f.name for f in fields(cfg)) and len(names) == len(set(names))
    assert cfg.section("augment")["aug_rot"] == cfg.aug_rot
