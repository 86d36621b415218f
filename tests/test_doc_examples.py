"""The docs' examples run as written, and their lists match the code they describe."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llmfail.errors import Kind
from llmfail.events import EVENT_TYPES

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
FIXTURES = ROOT / "tests" / "fixtures" / "provider-errors"


def python_blocks(markdown: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown.read_text(encoding="utf-8"), re.DOTALL)


def run_python(code: str, cwd: Path) -> str:
    """`code` in a fresh interpreter (as a reader would run it), in `cwd`; its stdout."""
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_readme_tour_library_example_answers_from_the_demo_chain(tmp_path: Path):
    shutil.copy(ROOT / "chains.example.yaml", tmp_path / "chains.yaml")
    (block,) = [b for b in python_blocks(ROOT / "README.md") if "llmfail.Engine(" in b]
    assert run_python(block, tmp_path).startswith("hello mock/echo ")


def test_every_event_type_is_documented_on_the_events_page():
    page = (DOCS / "events.md").read_text(encoding="utf-8")
    assert [t for t in EVENT_TYPES if f"| `{t}` |" not in page] == []


def test_every_error_kind_has_a_row_in_the_concepts_table():
    page = (DOCS / "concepts.md").read_text(encoding="utf-8")
    assert [k.value for k in Kind if f"| `{k.value}` |" not in page] == []


@pytest.mark.parametrize("source", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.name)
def test_the_classification_page_lists_every_recorded_error_shape_with_its_kind(source: Path):
    page = (DOCS / "classification.md").read_text(encoding="utf-8")
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([\w.-]+)`[^|]* \| \d+ \| `(\w+)` \|", page, re.M)}
    for fixture in json.loads(source.read_text(encoding="utf-8")):
        assert rows.get(fixture["id"]) == fixture["expected_kind"], fixture["id"]
