"""The README's numbers come from their sources: the quick start's output is what the command
prints, the results table is the shipped models' suite records (tools/readme_numbers.py)."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_tool():
    spec = importlib.util.spec_from_file_location("readme_numbers", ROOT / "tools" / "readme_numbers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_numbers_are_their_sources(monkeypatch):
    monkeypatch.delenv("EMOREC_MODEL", raising=False)
    tool = load_tool()
    text = (ROOT / "README.md").read_text()
    assert tool.render(text) == text, "README.md differs from its sources: run python tools/readme_numbers.py"


@pytest.mark.slow  # renders the README twice (it runs the quick start and the video commands)
def test_a_drifted_number_is_caught(monkeypatch):
    """A number edited by hand (the quick start's, a table cell) is put back by render()."""
    monkeypatch.delenv("EMOREC_MODEL", raising=False)
    tool = load_tool()
    text = (ROOT / "README.md").read_text()
    cell = re.search(r"\| (\d+\.\d)% \|", text)
    for old, new in (("happy 0.", "happy 0.9"), (cell.group(0), "| 99.9% |")):
        drifted = text.replace(old, new, 1)
        assert drifted != text and tool.render(drifted) == text
