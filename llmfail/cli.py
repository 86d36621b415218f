"""The `llmfail` command: parse, call the library, print. Nothing here decides policy.

Heavy modules (the engine, httpx, providers, YAML, Textual) are imported inside
the commands that use them, so `llmfail --help` and `ls-benched` start fast.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import typer
from typer.core import TyperGroup

from .errors import ExitCode, LlmfailError, UsageError, exit_code_for

if TYPE_CHECKING:
    from .config import Config
    from .store import Store


@dataclass
class _Options:
    config: str | None = None
    db: str | None = None
    debug: bool = False


_opts = _Options()


class _Group(TyperGroup):
    """Turns every error that reaches the top into one line and the right exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise typer.Exit(ExitCode.INTERRUPTED) from None
        except Exception as error:  # noqa: BLE001 - the top of the program
            if _opts.debug or _is_cli_signal(error):
                raise
            from .output import report_error

            report_error(error)
            if not isinstance(error, LlmfailError):
                from .output import note

                note("  (an unexpected error: run again with --debug for the traceback)")
            raise typer.Exit(exit_code_for(error)) from None


def _is_cli_signal(error: Exception) -> bool:
    """Typer/Click's own exits and usage errors, which Typer reports itself (exit 2 for usage).

    Recognised by module because recent Typer versions vendor Click privately."""
    return type(error).__module__.split(".")[0] in ("click", "typer")


app = typer.Typer(
    cls=_Group,
    name="llmfail",
    help="LLM failover chains you can test offline and operate live.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"llmfail {version('llmfail')}")
        raise typer.Exit()


@app.callback()
def _main(
    config: Optional[str] = typer.Option(None, "--config", help="Config file (else $LLMFAIL_CONFIG, ./chains.yaml, user config dir)."),
    db: Optional[str] = typer.Option(None, "--db", help="State DB (else $LLMFAIL_DB, user state dir)."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    _opts.config, _opts.db, _opts.debug = config, db, debug


def load() -> Config:
    """The config by the SPEC's discovery order; the embedded example when none exists."""
    from .config import load_config, load_default_config
    from .paths import find_config

    path = find_config(_opts.config)
    if path is None:
        from .output import note

        note("llmfail: no chains.yaml found; using the built-in example config (see `llmfail check`)")
        return load_default_config()
    if not path.is_file():
        raise UsageError(f"config file not found: {path}", hint="pass --config PATH or create ./chains.yaml")
    return load_config(path)


def open_db() -> Store:
    from .store import open_store

    return open_store(_opts.db)


@app.command()
def run(
    prompt: str = typer.Argument(..., help="The prompt; '-' reads it from stdin."),
    chain: Optional[str] = typer.Option(None, "--chain", "-c", help="Chain name (default: the first in the config)."),
    system: Optional[str] = typer.Option(None, "--system", help="System prompt."),
    stream: Optional[bool] = typer.Option(None, "--stream/--no-stream", help="Stream tokens (default: when stdout is a terminal)."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1),
    temperature: Optional[float] = typer.Option(None, "--temperature", min=0.0),
    json_out: bool = typer.Option(False, "--json", help="Print the whole result as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No failover trace on stderr."),
) -> None:
    """Send one request through a chain; the answer on stdout, failovers on stderr."""
    from .run import run_command

    text = sys.stdin.read() if prompt == "-" else prompt
    if not text.strip():
        raise UsageError("the prompt is empty", hint="pass a prompt, or '-' to read it from stdin")
    config = load()
    name = chain or next(iter(config.chains))
    if stream is None:
        stream = sys.stdout.isatty() and not json_out
    code = run_command(config, open_db(), name, text, system=system, stream=stream, max_tokens=max_tokens,
                       temperature=temperature, json_out=json_out, quiet=quiet)
    raise typer.Exit(code)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
