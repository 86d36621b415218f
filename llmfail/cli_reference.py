"""The command-line reference (`docs/cli.md`), rendered from the Typer app itself.

Every command, argument and option is read from the Click command tree Typer
builds for `llmfail.cli.app`, with the same help records `--help` prints, so
the reference cannot drift from the CLI: `tests/test_cli_reference.py` fails
when `docs/cli.md` differs from what this module renders now. Regenerate with

    python -m llmfail.cli_reference docs/cli.md

Nothing imports this module at run time; it exists for that file and its test.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

#: The command that rewrites the reference; the staleness test names it in its failure message.
REGENERATE = "python -m llmfail.cli_reference docs/cli.md"

_HEAD = """\
# Command-line reference

<!-- Generated from the Typer app by `{regenerate}`: do not edit by hand
     (tests/test_cli_reference.py fails when this file is stale). -->

Every command and option of `llmfail`, as `llmfail COMMAND --help` prints them. The global
options go before or after the command (`llmfail --db other.db ls-benched` and
`llmfail ls-benched --db other.db` are the same). What the commands are for, and when to use
which, is in [concepts](concepts.md), [operations](operations.md) and
[simulate](simulate.md); their `--json` shapes are in [events and JSON](events.md).

## Exit codes

Every command uses the same four:

| code | means |
|---|---|
| `{ok}` | the work succeeded |
| `{failed}` | the work failed: a chain exhausted, a fail-fast error, an expectation of `simulate` not met, a store that cannot be reached |
| `{usage}` | a usage or configuration error: a mistyped option, a bad duration, a config with problems, an unknown chain |
| `{interrupted}` | interrupted (Ctrl-C) |

An error is one line on stderr, `llmfail: error: …`, usually followed by a `hint:` line; the
global `--debug` shows the traceback instead.
"""


def _cell(text: str) -> str:
    """`text` fit for one Markdown table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def _paragraphs(text: str) -> str:
    """A docstring-style help text as Markdown paragraphs (Click's `\\b` no-rewrap markers dropped)."""
    blocks = [
        " ".join(line.strip() for line in block.splitlines() if line.strip() != "\b") for block in text.split("\n\n")
    ]
    return "\n\n".join(block for block in blocks if block)


def _examples(epilog: str) -> str:
    """The `Examples:` epilog (`llmfail.cli.examples`) as a shell code block."""
    lines = [line.strip() for line in epilog.splitlines()]
    commands = [line for line in lines if line and line != "\b" and not line.endswith(":")]
    return "Examples:\n\n```sh\n" + "\n".join(commands) + "\n```"


def _params_table(title: str, records: list[tuple[str, str]]) -> str:
    rows = "\n".join(f"| `{_cell(name)}` | {_cell(help_text)} |" for name, help_text in records)
    return f"{title}:\n\n| {title.lower()[:-1]} | meaning |\n|---|---|\n{rows}"


def _section(command: Any, ctx: Any, path: str) -> list[str]:
    """The Markdown of one command, then of its subcommands (a group such as `state`)."""
    parts = [f"## `{path}`", _paragraphs(command.help or "")]
    pieces = " ".join(command.collect_usage_pieces(ctx))
    parts.append(f"```\n{path} {pieces}\n```")
    arguments: list[tuple[str, str]] = []
    options: list[tuple[str, str]] = []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None or getattr(param, "hidden", False) or param.name == "help":
            continue  # every command has --help; listing it each time says nothing
        (arguments if param.param_type_name == "argument" else options).append(record)
    if arguments:
        parts.append(_params_table("Arguments", arguments))
    if options:
        parts.append(_params_table("Options", options))
    if command.epilog:
        parts.append(_examples(command.epilog))
    sections = ["\n\n".join(part for part in parts if part)]
    for name, sub in _subcommands(command, ctx):
        sections += _section(sub, type(ctx)(sub, info_name=name, parent=ctx), f"{path} {name}")
    return sections


def _subcommands(command: Any, ctx: Any) -> list[tuple[str, Any]]:
    """A group's commands in the order they were registered (the order of `--help`)."""
    names = command.list_commands(ctx) if hasattr(command, "list_commands") else []
    return [(name, command.get_command(ctx, name)) for name in names]


def render() -> str:
    """The whole reference, as `docs/cli.md` must hold it."""
    import typer
    from typer.main import get_command

    from .cli import app
    from .errors import ExitCode

    root = get_command(app)
    ctx = typer.Context(root, info_name="llmfail")
    head = _HEAD.format(
        regenerate=REGENERATE,
        ok=ExitCode.OK.value,
        failed=ExitCode.FAILED.value,
        usage=ExitCode.USAGE.value,
        interrupted=ExitCode.INTERRUPTED.value,
    )
    commands = _subcommands(root, ctx)
    index = "\n".join(
        f"| [`{name}`](#llmfail-{name}) | {_cell(command.get_short_help_str(limit=200))} |"
        for name, command in commands
    )
    global_options = [record for param in root.get_params(ctx) if (record := param.get_help_record(ctx)) is not None]
    sections = [
        head.rstrip("\n"),
        "## Commands\n\n| command | what it does |\n|---|---|\n" + index,
        "## Global options\n\n"
        + _params_table("Options", global_options).split(":\n\n", 1)[1]
        + "\n\nShell completion: `llmfail --install-completion` (bash, zsh, fish, PowerShell).",
    ]
    for name, command in commands:
        sections += _section(command, typer.Context(command, info_name=name, parent=ctx), f"llmfail {name}")
    return "\n\n".join(sections) + "\n"


def main(argv: list[str]) -> int:
    """`python -m llmfail.cli_reference [PATH]`: write the reference to PATH, else to stdout."""
    text = render()
    if argv:
        Path(argv[0]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
