"""Nothing in the repository points at a document it does not hold.

A user who installs llmfail has the README, `docs/` and the code, nothing else: every
relative Markdown link must resolve (its `#anchor` too), and every `*.md` name mentioned
anywhere (README, docs, code, tests, pyproject, benchmarks) must be a file of the repository.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


#: The files whose text is checked: sources, tests, docs and project files.
TEXT_SUFFIXES = frozenset({".md", ".py", ".toml", ".yaml", ".yml", ".json", ".txt", ".cfg", ".ini", ""})

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
URL = re.compile(r"[a-z][a-z0-9+.-]*://\S+")
MD_NAME = re.compile(r"(?<![\w/.-])((?:\.{1,2}/|[\w-]+/)*[\w.-]*\w\.md)(?![\w-])")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
#: The name of a behaviour document that is not part of the repository (built here so this
#: file does not mention it itself).
UNSHIPPED = re.compile(r"\b" + "SP" + r"EC\b|" + "\u00a7")


def repository_files() -> list[Path]:
    """Tracked and new (not ignored) files, so a page added but not yet committed counts too."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT,
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout.decode()
        paths = [ROOT / name for name in listed.split("\0") if name]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: walk it
        paths = [
            p
            for p in ROOT.rglob("*")
            if not any(part.startswith(".") or part in ("__pycache__", "build") for part in p.relative_to(ROOT).parts)
        ]
    return sorted(p for p in paths if p.is_file())


FILES = repository_files()
EXISTING = {p.relative_to(ROOT).as_posix() for p in FILES}
BASENAMES = {Path(name).name for name in EXISTING}
TEXTS = [p for p in FILES if p.suffix in TEXT_SUFFIXES and "__snapshots__" not in p.parts]
MARKDOWN = [p for p in TEXTS if p.suffix == ".md"]


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def resolves(name: str, mentioned_in: Path) -> str | None:
    """The repository path `name` stands for, seen from the file that mentions it; None if none."""
    for base in (mentioned_in.parent, ROOT):
        candidate = (base / name).resolve()
        if candidate.is_relative_to(ROOT) and candidate.relative_to(ROOT).as_posix() in EXISTING:
            return candidate.relative_to(ROOT).as_posix()
    if "/" not in name and name in BASENAMES:  # a bare file name: any file of that name
        return name
    return None


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(markdown: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in FENCE.sub("", markdown.read_text(encoding="utf-8")).splitlines():
        if match := re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line):
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(markdown: Path) -> list[str]:
    """The relative link targets of a Markdown file (code blocks and external URLs left out)."""
    text = FENCE.sub("", markdown.read_text(encoding="utf-8"))
    return [target for target in LINK.findall(text) if not URL.match(target) and not target.startswith("mailto:")]


def test_the_repository_has_markdown_and_text_to_check():
    assert ROOT / "README.md" in MARKDOWN
    assert any(rel(p).startswith("docs/") for p in MARKDOWN)
    assert any(p.suffix == ".py" for p in TEXTS)


@pytest.mark.parametrize("markdown", MARKDOWN, ids=rel)
def test_every_relative_link_of_a_markdown_file_resolves_with_its_anchor(markdown: Path):
    broken = []
    for target in links(markdown):
        path, _, anchor = target.partition("#")
        if not path:  # a link within the page
            found: str | None = rel(markdown)
        else:
            found = resolves(path, markdown)
        if found is None:
            broken.append(f"{target}: no such file")
        elif anchor and found.endswith(".md") and anchor not in anchors(ROOT / found):
            broken.append(f"{target}: {found} has no heading for #{anchor}")
    assert not broken, f"{rel(markdown)} links to what is not there: {broken}"


def test_every_md_file_named_anywhere_in_the_repository_exists():
    missing = []
    for path in TEXTS:
        if path == Path(__file__).resolve():  # its own examples of missing names
            continue
        text = URL.sub(" ", path.read_text(encoding="utf-8", errors="replace"))
        for name in MD_NAME.findall(text):
            if resolves(name, path) is None:
                missing.append(f"{rel(path)}: {name}")
    assert not missing, f"these name a Markdown file the repository does not hold: {missing}"


def test_nothing_refers_to_the_behaviour_document_kept_outside_the_repository():
    mentions = [
        f"{rel(path)}:{number}: {line.strip()[:100]}"
        for path in TEXTS
        if path != Path(__file__).resolve()
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if UNSHIPPED.search(line)
    ]
    assert not mentions, f"explain it in our own words or link a docs/ page instead: {mentions}"


def test_the_checks_catch_a_dangling_link_and_a_missing_md_name(tmp_path: Path):
    page = ROOT / "docs" / "page-under-test.md"  # a stand-in path: only its parent matters
    assert resolves("concepts.md", page) == "docs/concepts.md"
    assert resolves("../README.md", page) == "README.md"
    assert resolves("nowhere.md", page) is None
    assert resolves("docs/configuration.md", ROOT / "README.md") == "docs/configuration.md"
    assert MD_NAME.findall("see docs/fleet.md, `redis.md` and NOTES.md.") == ["docs/fleet.md", "redis.md", "NOTES.md"]
    assert MD_NAME.findall(URL.sub(" ", "see https://example.com/a/NOTES.md")) == []  # URLs are not ours
    assert slug("`llmfail ls-benched`") == "llmfail-ls-benched"
    assert slug("Health: probe, stats, slow demotion") == "health-probe-stats-slow-demotion"
