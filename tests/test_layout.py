"""The folder layout is the data flow: no module imports from a later stage, and inference runs
without torch or the training stack."""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "emorec"
CORE = {"config", "errors", "imageio", "preprocess", "detect", "files", "modelfile", "provenance", "plots", "__init__"}
STAGES = ["core", "data", "models", "train", "export", "inference", "evaluation", "front"]


def stage(module: str) -> str:
    top = module.split(".")[1] if module.startswith("emorec.") else module
    return "core" if top in CORE or module == "emorec" else top if top in STAGES else "front"


def imports(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.append(node.module)
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names]
    return out


MODULES = sorted(PKG.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_no_import_runs_back_up_the_stages(path):
    here = stage("emorec." + ".".join(path.relative_to(PKG).with_suffix("").parts))
    later = [m for m in imports(path) if m.startswith("emorec") and STAGES.index(stage(m)) > STAGES.index(here)]
    assert not later, f"{here} module imports a later stage: {later}"


@pytest.mark.parametrize("path", sorted((PKG / "inference").glob("*.py")), ids=lambda p: p.name)
def test_inference_needs_neither_torch_nor_training(path):
    bad = [m for m in imports(path) if m.split(".")[0] == "torch" or stage(m) in ("models", "train", "export")]
    assert not bad, bad


ROOT = PKG.parents[1]
SCRIPTS = sorted(p for d in ("benchmarks", "studies", "tools") for p in (ROOT / d).glob("*.py"))


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_script_starts_one_way(script):
    """`python FOLDER/NAME.py` from the repository root, on the installed package (no sys.path edits)."""
    import subprocess
    import sys

    assert "sys.path" not in script.read_text()
    run = subprocess.run([sys.executable, str(script.relative_to(ROOT)), "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0 and "usage:" in run.stdout, run.stderr[-500:]
