"""docs/cli.md is the CLI's own description of itself: rendered from the Typer app, never stale."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from llmfail.cli_reference import REGENERATE, render

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "cli.md"


def click_tree() -> list[tuple[str, object]]:
    """(`llmfail COMMAND`, the Click command) for every command and subcommand of the app."""
    import typer
    from typer.main import get_command

    from llmfail.cli import app

    found: list[tuple[str, object]] = []

    def walk(command: object, ctx: typer.Context, path: str) -> None:
        found.append((path, command))
        for name in getattr(command, "list_commands", lambda _ctx: [])(ctx):
            sub = command.get_command(ctx, name)  # type: ignore[attr-defined]
            walk(sub, typer.Context(sub, info_name=name, parent=ctx), f"{path} {name}")

    root = get_command(app)
    walk(root, typer.Context(root, info_name="llmfail"), "llmfail")
    return found


def test_docs_cli_md_is_what_the_app_renders_now():
    assert REFERENCE.read_text(encoding="utf-8") == render(), (
        f"docs/cli.md is stale: the CLI's commands or help texts changed. Regenerate it with `{REGENERATE}`"
    )


def test_the_reference_has_a_section_for_every_command_and_every_option_it_takes():
    text = render()
    for path, command in click_tree():
        heading = "## Global options" if path == "llmfail" else f"## `{path}`"
        assert heading in text
        section = text.split(heading, 1)[1].split("\n## ", 1)[0]
        for param in command.params:  # type: ignore[attr-defined]
            for spelling in [*param.opts, *param.secondary_opts]:
                if spelling.startswith("-") and spelling not in ("--help", "-h"):
                    assert spelling in section, (path, spelling)


def test_the_reference_does_not_depend_on_the_terminal_width(monkeypatch: pytest.MonkeyPatch):
    wide = render()
    monkeypatch.setenv("COLUMNS", "40")
    assert render() == wide


def test_examples_are_shell_blocks_without_clicks_rewrap_markers():
    text = render()
    assert "\b" not in text
    assert '```sh\nllmfail run "Say hi" --chain prod\n' in text


def test_the_regenerate_command_writes_the_file_the_test_compares(tmp_path: Path):
    target = tmp_path / "cli.md"
    module, _ = REGENERATE.removeprefix("python -m ").split(" ", 1)
    done = subprocess.run([sys.executable, "-m", module, str(target)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert target.read_text(encoding="utf-8") == render()
