"""The `llmfail` command: parse, call the library, print. Nothing here decides policy.

Heavy modules (the engine, httpx, providers, YAML, Textual) are imported inside
the commands that use them, so `llmfail --help` and `ls-benched` start fast.
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from .errors import ExitCode, LlmfailError, UsageError, exit_code_for, plural

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table
    from typer.models import CommandInfo

    from .actions import CheckWarning
    from .config import Chain, Config
    from .events import Event
    from .simulate import Expectation, FaultSpec, Report, Scenario
    from .stats import ModelStats
    from .store import Store
    from .store.select import Selection


@dataclass
class _Options:
    config: str | None = None
    db: str | None = None
    debug: bool = False


_opts = _Options()
_owns_process = False  # set by main(): this process is the CLI's, not a caller's (tests run the app in-process)


#: The global options, which may also follow the command (`llmfail run x --debug`); the first two take a value.
_GLOBAL_VALUED = ("--config", "--db")
_GLOBAL_FLAGS = ("--debug",)


def hoist_global_options(args: list[str], commands: Collection[str]) -> list[str]:
    """`args` with the global options found after the command moved in front of it.

    Click only knows a group's options before the command name; people type
    `llmfail chains --config f.yaml` too. Nothing after `--` is moved (a prompt
    may really be `--debug`).
    """
    at = 0
    while at < len(args) and args[at] not in commands:
        if args[at] == "--":
            return args
        at += 2 if args[at] in _GLOBAL_VALUED else 1
    if at >= len(args):
        return args
    head, tail, moved = args[:at], [args[at]], []
    rest = iter(args[at + 1 :])
    for token in rest:
        if token == "--":
            tail += [token, *rest]
            break
        if token in _GLOBAL_VALUED:
            value = next(rest, None)
            moved += [token] if value is None else [token, value]
        elif token.split("=", 1)[0] in _GLOBAL_VALUED or token in _GLOBAL_FLAGS:
            moved.append(token)
        else:
            tail.append(token)
    return head + moved + tail


class _Group(TyperGroup):
    """Turns every error that reaches the top into one line and the right exit code.

    Click's own usage errors (`No such option`, `Invalid value`) are printed in
    the same `llmfail: error: ... hint: ...` style as ours, with exit 2.
    """

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = hoist_global_options(list(sys.argv[1:] if args is None else args), self.commands)
        try:
            code = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except Exception as error:
            if _is_cli_signal(error) and type(error).__name__ == "Abort":  # stdin closed under a prompt
                sys.stderr.write("llmfail: aborted\n")
                code = ExitCode.FAILED
            elif not _is_usage_error(error):
                raise
            elif type(error).__name__ == "NoArgsIsHelpError":
                error.show()  # type: ignore[attr-defined]  # the help text itself
                code = ExitCode.USAGE
            else:
                code = _report_usage_error(error)
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else ExitCode.OK)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise typer.Exit(ExitCode.INTERRUPTED) from None
        except Exception as error:
            if _opts.debug or _is_cli_signal(error):
                raise
            from .output import report_error

            report_error(error)
            if not isinstance(error, LlmfailError):
                from .output import note

                note("  (an unexpected error: run again with --debug for the traceback)")
            raise typer.Exit(exit_code_for(error)) from None


def _is_cli_signal(error: Exception) -> bool:
    """Typer/Click's own exits and usage errors, which `_Group.main` reports (exit 2 for usage).

    Recognised by module because recent Typer versions vendor Click privately."""
    return type(error).__module__.split(".")[0] in ("click", "typer")


def _is_usage_error(error: Exception) -> bool:
    return _is_cli_signal(error) and any(cls.__name__ == "UsageError" for cls in type(error).__mro__)


def _report_usage_error(error: Any) -> ExitCode:
    """Click's usage error as one `llmfail: error:` line and a hint naming the command's --help."""
    from .output import report_error

    ctx = getattr(error, "ctx", None)
    command = ctx.command_path if ctx is not None else "llmfail"
    what = "commands and options" if ctx is None or isinstance(ctx.command, TyperGroup) else "options"
    message = error.format_message().rstrip(".")
    report_error(UsageError(message[:1].lower() + message[1:], hint=f"`{command} --help` lists the {what}"))
    return ExitCode.USAGE


app = typer.Typer(
    cls=_Group,
    name="llmfail",
    help="LLM failover chains you can test offline and operate live.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def examples(*lines: str) -> str:
    """A command's `--help` epilog: example command lines, kept as written (`\\b` stops Click's rewrapping)."""
    return "Examples:\n\n\b\n" + "\n".join(f"  {line}" for line in lines)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"llmfail {version('llmfail')}")
        raise typer.Exit()


@app.callback()
def _main(
    config: str | None = typer.Option(
        None, "--config", help="Config file (else $LLMFAIL_CONFIG, ./chains.yaml, user config dir)."
    ),
    db: str | None = typer.Option(
        None,
        "--db",
        help="State store: a SQLite path or a redis:// URL (else $LLMFAIL_DB, the config's state:, user state dir).",
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    _opts.config, _opts.db, _opts.debug = config, db, debug


def load() -> Config:
    """The config found by discovery (`--config`, `$LLMFAIL_CONFIG`, `./chains.yaml`, the user config
    directory); the embedded example when none exists."""
    config = _load_file()
    if config is None:
        from .config import load_default_config
        from .output import note

        note("llmfail: no chains.yaml found; using the built-in example config (see `llmfail check`)")
        return load_default_config()
    return config


def _load_file() -> Config | None:
    """The config file found by discovery (`llmfail.paths.find_config`), loaded; None when there is none."""
    from .config import load_config
    from .paths import find_config

    path = find_config(_opts.config)
    if path is None:
        return None
    if not path.exists():  # a directory or an unreadable file: load_config says which
        raise UsageError(
            f"config file not found: {path}", hint="pass --config PATH, or write a starter one with `llmfail init`"
        )
    return load_config(path)


def open_db(config: Config | None = None) -> Store:
    """The selected store (`llmfail.store.select`), opened: errors are the store's clear one line."""
    return _selection(config).open()


def open_request_store(config: Config) -> Store:
    """The store requests walk with: behind the breaker, so a locked or unreachable store (or one
    that cannot even be opened) never fails a request; it only adds a warning to the answer."""
    from .store.guard import guard_store

    return guard_store(None, _opts.db, config.state)


def _selection(config: Config | None = None) -> Selection:
    """--db, else $LLMFAIL_DB, else the config's `state:`, else the default path. Commands that
    have not loaded the config read it only when its text has a top-level `state:` key (whose
    namespace and password variable apply to a --db or $LLMFAIL_DB URL too)."""
    from .store import sqlite_file
    from .store.select import names_state, select_store

    named = _opts.db or os.environ.get("LLMFAIL_DB")
    # A named SQLite file needs nothing from the config (a namespace is Redis's): skip the lookup,
    # which `ls-benched --json` polled in a loop would otherwise pay for on every call.
    if config is None and not (named and sqlite_file(named) is not None):
        from .paths import find_config

        path = find_config(_opts.config)
        if path is not None and names_state(path):
            config = _load_file()
    return select_store(_opts.db, config.state if config is not None else None)


@contextmanager
def _no_garbage_collection() -> Iterator[None]:
    """No cyclic garbage collection while a one-shot command loads the engine and the config, then
    `gc.freeze()`: ~20k objects that live as long as the process, which the collector would otherwise
    traverse again and again for nothing (~5 ms of `llmfail run`'s start-up, `benchmarks/startup.py`).

    Only when the CLI owns its process (`main`): a caller that runs the app in-process (tests
    through Typer's runner) keeps its collector exactly as it was.
    """
    if not _owns_process:
        yield
        return
    import gc

    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


@app.command(
    epilog=examples(
        'llmfail run "Say hi" --chain prod',
        'echo "Summarise this" | llmfail run - --no-stream --json',
    )
)
def run(
    prompt: str = typer.Argument(..., help="The prompt; '-' reads it from stdin."),
    chain: str | None = typer.Option(None, "--chain", "-c", help="Chain name (default: the first in the config)."),
    system: str | None = typer.Option(None, "--system", help="System prompt."),
    stream: bool | None = typer.Option(
        None, "--stream/--no-stream", help="Stream tokens (default: when stdout is a terminal)."
    ),
    max_tokens: int | None = typer.Option(
        None, "--max-tokens", min=1, help="Longest answer, in tokens (default: the provider's; Anthropic's 1024)."
    ),
    temperature: float | None = typer.Option(
        None, "--temperature", min=0.0, help="Sampling temperature sent to every entry (default: the provider's)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the whole result as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No failover trace on stderr."),
) -> None:
    """Send one request through a chain; the answer on stdout, failovers on stderr."""
    text = sys.stdin.read() if prompt == "-" else prompt
    if not text.strip():
        raise UsageError("the prompt is empty", hint="pass a prompt, or '-' to read it from stdin")
    with _no_garbage_collection():
        from .run import run_command

        config = load()
    name = chain or next(iter(config.chains))
    at_terminal = sys.stdout.isatty()
    if stream is None:
        stream = at_terminal and not json_out
    if at_terminal and stream and not json_out:
        # A person at a terminal wants the answer: a cut stream restarts on the next entry,
        # with a visible marker, unless the config set mid_stream itself.
        config = config.defaulted(mid_stream="restart")
    store = open_request_store(config)
    try:
        code = run_command(
            config,
            store,
            name,
            text,
            system=system,
            stream=stream,
            max_tokens=max_tokens,
            temperature=temperature,
            json_out=json_out,
            quiet=quiet,
        )
    finally:
        store.close()  # now, not whenever the exit's garbage collection reaches it (it skips it: see run_command)
    raise typer.Exit(code)


# --------------------------------------------------------------------------- operator commands
# Each command parses, calls `llmfail.actions`, prints. The TUI calls the same actions.


def load_for_defaults(*, required: bool) -> tuple[Config | None, bool]:
    """The config for commands that only take defaults from it (bench, events --vacuum).

    No config file: the embedded default, silently (operators bench from any
    directory). A broken file: its error when `required`; otherwise a warning
    and None, so an operator mid-incident can still `bench --for` while the
    YAML is being fixed. Returns the config and whether it came from a file.
    """
    from .config import load_default_config
    from .errors import ConfigError

    try:
        config = _load_file()
    except (ConfigError, UsageError) as error:
        if required:
            raise
        from .output import warn

        warn(f"{error.message}; going on without the config")
        return None, False
    return (config, True) if config is not None else (load_default_config(), False)


def open_existing_db() -> Store | None:
    """The state DB for a pure read, or None when there is none yet: a read never creates the file.

    When the DB was named (--db, $LLMFAIL_DB, the config's `state:`) and its file does not
    exist, stderr says so (a mistyped path would otherwise read as an empty log); the exit
    code stays 0 for scripts."""
    selection = _selection()
    if selection.exists():
        return selection.open()
    if selection.source != "default":
        from .output import note

        note(
            f"llmfail: no state DB at {selection.shown} (named by {selection.source}): nothing recorded there yet",
            style="yellow",
        )
    return None


def _duration(option: str, text: str) -> float:
    from .durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as error:
        raise UsageError(f"{option}: {error}", hint="durations look like 250ms, 30s, 10m, 2h or 1d") from None


@app.command(
    epilog=examples(
        'llmfail bench openai/gpt-4o --for 30m --reason "bad deploy"',
        "llmfail bench openai/gpt-4o --for 5m --replace    # shorten a running bench on purpose",
    )
)
def bench(
    model: str = typer.Argument(..., help="provider/model (or provider/model#N for one credential)."),
    for_: str | None = typer.Option(
        None, "--for", metavar="DURATION", help="Bench length (default: the policy cooldown)."
    ),
    reason: str | None = typer.Option(None, "--reason", help="Why, for the event log and ls-benched."),
    replace: bool = typer.Option(False, "--replace", help="Replace a running bench even when the new one is shorter."),
    json_out: bool = typer.Option(False, "--json", help="Print the bench row (the bench now running) as JSON."),
) -> None:
    """Bench MODEL by hand: every process skips it until it expires or is unbenched.

    A running bench that lasts longer is kept (with its reason) and the output says so;
    --replace sets the new, shorter one on purpose."""
    import time

    from .actions import bench_model, check_model_name, unknown_model
    from .output import warn

    duration = _duration("--for", for_) if for_ is not None else None
    config, from_file = load_for_defaults(required=duration is None)
    check_model_name(model)
    if from_file:
        assert config is not None
        problem = unknown_model(model, config)  # an unknown credential key is refused here
    elif config is not None:  # no config file: nothing to check the name against
        problem = f"no config file found, so {model} cannot be checked against any chain"
    else:  # a broken config file: load_for_defaults has said so
        problem = None
    store = open_db()
    now = time.time()
    before = store.states([model]).get(model)
    row = bench_model(store, config, model, duration, reason, now, replace=replace)
    kept = not replace and before is not None and before.is_benched(now) and before.bench_until == row.until
    if problem:
        warn(f"{problem}: benched anyway")
    from .output import local_time

    until = local_time(row.until, now)
    why = f" ({row.reason})" if row.reason else ""
    kept_line = (
        f"{row.model} stays benched until {until}, {row.remaining} left{why}: "
        "a running bench is never shortened (--replace sets the shorter one)"
    )
    if json_out:
        from .output import emit_json, note

        if kept:
            note(f"llmfail: {kept_line}", style="yellow")
        emit_json(row.to_json())
    else:
        from .output import stdout

        line = kept_line if kept else f"benched {row.model} for {row.remaining}, until {until}{why}"
        stdout().print(line, markup=False, highlight=False)


@app.command(epilog=examples("llmfail unbench openai/gpt-4o --reason fixed", "llmfail unbench --all"))
def unbench(
    models: list[str] | None = typer.Argument(None, help="provider/model to lift (several allowed)."),
    all_: bool = typer.Option(False, "--all", help="Lift every bench."),
    reason: str | None = typer.Option(None, "--reason", help="Why, for the audit trail (`events --type unbenched`)."),
    json_out: bool = typer.Option(False, "--json", help='Print {"unbenched": [...]}.'),
) -> None:
    """Lift benches: MODEL is live again at once (its credential benches too)."""
    import time

    from .actions import unbench_models

    if all_ == bool(models):
        raise UsageError(
            "name the MODEL to unbench, or pass --all (not both)", hint="`llmfail ls-benched` lists the benches"
        )
    done = unbench_models(open_db(), None if all_ else models, time.time(), reason)
    if json_out:
        from .output import emit_json

        emit_json({"unbenched": done.lifted})
    else:
        from .output import note, stdout

        for key in done.lifted:
            stdout().print(f"unbenched {key}", markup=False, highlight=False)
        if all_ and not done.lifted:
            note("nothing was benched")
    if done.not_benched:
        names = ", ".join(done.not_benched)
        raise LlmfailError(
            f"{names} {'is' if len(done.not_benched) == 1 else 'are'} not benched",
            hint="`llmfail ls-benched` lists the benches",
        )


@app.command("ls-benched", epilog=examples("llmfail ls-benched", "llmfail ls-benched --json"))
def ls_benched(json_out: bool = typer.Option(False, "--json", help="Print the rows as a JSON array.")) -> None:
    """Current benches, soonest expiry first (a pure read: nothing is changed)."""
    import time

    from .actions import list_benches

    now = time.time()
    store = open_existing_db()
    rows = list_benches(store, now) if store is not None else []
    if json_out:
        from .output import emit_json

        emit_json([row.to_json() for row in rows])
    elif rows:
        from .output import bench_table, stdout

        stdout().print(bench_table(rows, now))
    else:
        from .output import note

        note("no model is benched")


@app.command(
    epilog=examples(
        "llmfail events --since 10m --type failover,benched",
        "llmfail events --follow --model openai/gpt-4o",
        "llmfail events -n 20 --json",
    )
)
def events(
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new events until Ctrl-C."),
    since: str | None = typer.Option(
        None, "--since", metavar="DURATION", help="Only events newer than this (e.g. 1h)."
    ),
    model: str | None = typer.Option(None, "--model", "-m", help="Only this provider/model."),
    chain: str | None = typer.Option(None, "--chain", "-c", help="Only this chain."),
    type_: list[str] | None = typer.Option(None, "--type", "-t", help="Only these types (repeat or comma-separate)."),
    limit: int = typer.Option(100, "--limit", "-n", min=0, help="The newest N events (0: all)."),
    json_out: bool = typer.Option(False, "--json", help="One JSON object per line (the event row)."),
    vacuum: bool = typer.Option(False, "--vacuum", help="Prune events older than `retention` now, then exit."),
) -> None:
    """The event log, oldest first; --follow tails what any process writes."""
    import time

    from .actions import EventFilter, follow_events, parse_types, recent_events
    from .output import emit_json, event_text, stdout

    if vacuum:
        _vacuum(json_out)
        return
    where = EventFilter(
        since=time.time() - _duration("--since", since) if since is not None else None,
        model=model,
        chain=chain,
        types=parse_types(type_ or ()),
    )
    store = open_db() if follow else open_existing_db()
    if store is None:
        if model is not None:
            _warn_unknown_filter_model(model)
        return

    def show(batch: list[Event]) -> None:
        now = time.time()
        for event in batch:
            if json_out:
                emit_json(event.to_json())
            else:
                stdout().print(event_text(event, now), soft_wrap=True)

    rows, mark = recent_events(store, where, limit or None)
    if model is not None and not rows:
        _warn_unknown_filter_model(model)
    try:
        show(rows)
        if follow:
            for batch in follow_events(store, where, mark):
                show(batch)
    except BrokenPipeError:  # `llmfail events -f | head`: the reader left, which is fine
        _silence_stdout()


def _warn_unknown_filter_model(model: str) -> None:
    """`events --model M` found nothing: say so when no chain of the config has M either (a typo?)."""
    from .actions import unknown_model
    from .output import warn

    config, from_file = load_for_defaults(required=False)
    if not from_file or config is None:
        warn(f"no events for {model}; no config file found, so the name cannot be checked against any chain")
        return
    try:
        problem = unknown_model(model, config)
    except UsageError as error:  # an unknown credential key: the same words, as a warning here
        problem = error.message
    if problem:
        warn(f"no events for {model}, and {problem}")


def _vacuum(json_out: bool) -> None:
    """`events --vacuum`: prune by the config's retention now, not waiting for the hourly turn."""
    import time

    from .durations import format_duration

    config, _ = load_for_defaults(required=True)
    assert config is not None
    deleted = open_db().prune(now=time.time(), retention=config.policy.retention, force=True)
    if json_out:
        from .output import emit_json

        emit_json({"pruned": deleted})
    else:
        from .output import note

        note(f"pruned {plural(deleted, 'event')} older than {format_duration(config.policy.retention)}")


def _silence_stdout() -> None:
    """Point stdout at devnull so the interpreter's final flush cannot raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


@app.command(epilog=examples("llmfail chains", "llmfail chains --json"))
def chains(
    json_out: bool = typer.Option(False, "--json", help='Print {"NAME": [{"model", "state", ...}, ...]}.'),
) -> None:
    """Every chain with its flattened entries, and which are benched now."""
    import time

    from .actions import chains_view

    views = chains_view(load(), open_existing_db(), time.time())
    if json_out:
        from .output import emit_json

        emit_json({view.name: [entry.to_json() for entry in view.entries] for view in views})
    else:
        from .output import chains_table, stdout

        stdout().print(chains_table(views))


@app.command(epilog=examples("llmfail check", "llmfail check path/to/chains.yaml --json"))
def check(
    path: str | None = typer.Argument(None, help="Config file (default: the one llmfail would use)."),
    json_out: bool = typer.Option(
        False, "--json", help='Print {"config", "ok", "chains", "entries", "problems", "warnings"}.'
    ),
) -> None:
    """Validate a config: every problem with file:line:col (exit 2), and warnings for risky setups."""
    from .actions import suspicious
    from .config import load_default_config
    from .errors import ConfigError
    from .output import note, stdout

    if path is not None:
        _opts.config = path
    out = stdout()
    try:
        config = _load_file()
    except ConfigError as error:
        where = error.problems[0].file if error.problems else _opts.config
        if json_out:
            from .output import emit_json

            emit_json(
                {
                    "config": where,
                    "ok": False,
                    "chains": None,
                    "entries": None,
                    "problems": [problem.to_json() for problem in error.problems],
                    "warnings": [],
                }
            )
            raise typer.Exit(ExitCode.USAGE) from None
        for problem in error.problems:
            out.print(str(problem), markup=False, highlight=False)
        raise UsageError(f"{where}: {plural(len(error.problems), 'problem')}") from None
    if config is None:
        note("llmfail: no chains.yaml found; checking the built-in example config")
        config = load_default_config()
    warnings = suspicious(config) + _store_warnings(config)
    entries = sum(len(c.entries) for c in config.chains.values())
    if json_out:
        from .output import emit_json

        emit_json(
            {
                "config": config.path,
                "ok": True,
                "chains": len(config.chains),
                "entries": entries,
                "problems": [],
                "warnings": [{"where": w.where or None, "message": w.message} for w in warnings],
            }
        )
        return
    for warning in warnings:
        where = f"{warning.where}: " if warning.where else f"{config.path}: "
        out.print(f"{where}warning: {warning.message}", style="yellow", markup=False, highlight=False)
    out.print(
        f"{config.path}: ok ({plural(len(config.chains), 'chain')}, {plural(entries, 'entry', 'entries')}, "
        f"{plural(len(warnings), 'warning')})",
        markup=False,
        highlight=False,
    )


@app.command(epilog=examples("llmfail init", "llmfail init ~/.config/llmfail/chains.yaml --force"))
def init(
    path: str = typer.Argument(
        "chains.yaml", help="Where to write the config (default: ./chains.yaml).", show_default=False
    ),
    force: bool = typer.Option(False, "--force", help="Replace the file if it exists."),
) -> None:
    """Write a commented starter config: one chain from the provider keys set here and a local Ollama.

    Key variables are found by name (their values never go in the file); Ollama is asked at
    $OLLAMA_HOST or 127.0.0.1:11434. With nothing found, the chain is the built-in mock."""
    from .output import note
    from .starter import discover, starter_text, writable_target, write_starter

    writable_target(path, force=force)  # refused before anything is probed
    found = discover()
    written = write_starter(path, starter_text(found), force=force)
    names = [variable for _, variable in found.keys] + (["Ollama"] if found.ollama_models else [])
    what = ", ".join(names) if names else "no provider key or Ollama: the chain is the built-in mock"
    note(f"llmfail: wrote {written} (found: {what})", style="green")
    note(f"next: llmfail check {written}", style="")


@app.command(epilog=examples("llmfail schema > chains.schema.json", "llmfail schema | jq '.properties | keys'"))
def schema() -> None:
    """Print the JSON Schema (draft 2020-12) of chains.yaml: editors complete and check the file with it.

    Point an editor at it with a first line `# yaml-language-server: $schema=chains.schema.json`."""
    from .config.schema import schema_text

    sys.stdout.write(schema_text())


@app.command(epilog=examples("llmfail info", "llmfail --db /tmp/other.db info --json"))
def info(
    json_out: bool = typer.Option(
        False, "--json", help='Print {"config", "config_source", "store", "versions", "keys_set"}.'
    ),
) -> None:
    """Which config file and state store llmfail uses (and how each was found), versions, and which
    key variables are set (names only, never values)."""
    from importlib.metadata import PackageNotFoundError, version

    from .paths import config_source

    path, how = config_source(_opts.config)
    versions: dict[str, str | None] = {"python": sys.version.split()[0]}
    for package in ("llmfail", "httpx", "aiohttp", "typer", "rich", "textual", "redis"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    config, _ = load_for_defaults(required=False)
    store = _selection(config)
    names = {"OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"}
    if config is not None:
        names |= {c.api_key_env for entry in config.entries() for c in entry.credentials if c.api_key_env}
    keys_set = sorted(name for name in names if os.environ.get(name))
    if json_out:
        from .output import emit_json

        emit_json(
            {
                "config": str(path) if path is not None else None,
                "config_source": how,
                "store": store.to_json(),
                "versions": versions,
                "keys_set": keys_set,
            }
        )
        return
    from .output import stdout

    size = store.size_bytes
    file = store.sqlite_path()
    where = (
        "a server"
        if file is None
        else "a directory, not a state DB: run and bench will fail over it"
        if file.is_dir()
        else "no file yet"
        if size is None
        else f"{size:,} bytes"
    )
    unset = sorted(names - set(keys_set))
    lines = [
        f"config:   {path} ({how})" if path is not None else "config:   none found: the built-in example is used",
        f"store:    {store.shown} ({store.kind}, {store.source}; {where})",
        "versions: " + ", ".join(f"{name} {v}" for name, v in versions.items() if v is not None),
        "keys set: " + (", ".join(keys_set) or "none") + (f" (not set: {', '.join(unset)})" if unset else ""),
    ]
    for line in lines:
        stdout().print(line, markup=False, highlight=False)


def _store_warnings(config: Config) -> list[CheckWarning]:
    """`check` with a Redis store: connect and warn about settings that can silently lose state
    (`RedisStore.server_problems`). An unreachable server is a warning, not an error: check may run
    where the fleet's Redis is not reachable (a CI runner). SQLite needs nothing checked here
    (and `redis` is never imported for it)."""
    from .actions import CheckWarning
    from .errors import StateError

    selection = _selection(config)
    if not selection.is_redis:
        return []
    from .store.redis import RedisStore

    store = selection.open()
    try:
        assert isinstance(store, RedisStore)
        messages = [f"shared state {selection.shown}: {problem}" for problem in store.server_problems()]
    except StateError as error:
        messages = [f"{error.message}: its settings were not checked"]
    finally:
        store.close()
    return [CheckWarning("", message) for message in messages]


# --------------------------------------------------------------------------- health: stats, probe
# The figures come from `llmfail.stats` (the same function the dashboard uses), probes from `llmfail.probe`.


STATS_FORMATS = ("table", "json", "prometheus")


@app.command(
    epilog=examples(
        "llmfail stats --since 1h",
        "llmfail stats --chain prod --json",
        "llmfail stats --since 5m --format prometheus > /var/lib/node_exporter/textfile/llmfail.prom",
    )
)
def stats(
    since: str = typer.Option(
        "1h", "--since", metavar="DURATION", help="Window: events newer than this (e.g. 15m, 1d)."
    ),
    chain: str | None = typer.Option(None, "--chain", "-c", help="Only this chain's entries and traffic."),
    output: str | None = typer.Option(
        None,
        "--format",
        metavar="table|json|prometheus",
        help="table for people (default), json, or prometheus: the text format a textfile collector reads.",
    ),
    json_out: bool = typer.Option(
        False, "--json", help="Same as --format json: {MODEL: {requests, ok, failed, errors, ...}}."
    ),
) -> None:
    """Per-model figures from the event log: requests, errors by kind, failovers, benches, latency, state."""
    import time

    from .stats import model_stats

    if output is not None and output not in STATS_FORMATS:
        raise UsageError(f"--format {output!r} is not a format", hint=f"use one of: {', '.join(STATS_FORMATS)}")
    if json_out and output not in (None, "json"):
        raise UsageError(f"--json and --format {output} ask for two formats", hint="give one of them")
    output = "json" if json_out else output or "table"
    length = _duration("--since", since)
    selected: Chain | None = None
    if chain is not None:
        loaded = load()
        config: Config | None = loaded
        selected = loaded.chain(chain)
    else:  # the config only adds idle entries to the list: a broken or missing file is no reason to fail
        config, from_file = load_for_defaults(required=False)
        config = config if from_file else None
    now = time.time()
    store = open_existing_db()
    rows = model_stats(store, since=now - length, now=now, chain=selected, config=config) if store else {}
    if output == "json":
        from .output import emit_json

        emit_json({model: row.to_json() for model, row in rows.items()})
    elif output == "prometheus":
        from .prometheus import exposition

        sys.stdout.write(exposition(rows.values(), window_s=length))
    elif rows:
        _print_whole(_stats_table(list(rows.values())))
    else:
        from .output import note

        note(f"no events in the last {since}")


@app.command(epilog=examples("llmfail probe", "llmfail probe --chain prod --json"))
def probe(
    chain: str | None = typer.Option(
        None, "--chain", "-c", help="Probe only this chain's entries (default: every chain)."
    ),
    json_out: bool = typer.Option(False, "--json", help='Print [{"model", "state", "latency_ms", "kind", "status"}].'),
) -> None:
    """One cheap real request (a 1-token completion) to every entry at once: healthy, slow, degraded or offline.

    Exit 1 when some chain has no healthy entry left (for cron and CI)."""
    from .probe import run_probe

    config = load()
    chains = [config.chain(chain)] if chain is not None else list(config.chains.values())
    report = run_probe(config, open_db(), chains)
    if json_out:
        from .output import emit_json

        emit_json([result.to_json() for result in report.results])
    else:
        from rich.table import Table
        from rich.text import Text

        styles = {"healthy": "green", "slow": "yellow", "degraded": "bold yellow", "offline": "bold red"}
        table = Table(box=None, header_style="bold", pad_edge=False)
        for column in ("model", "state", "latency", "error"):
            table.add_column(column, justify="right" if column == "latency" else "left")
        for result in report.results:
            latency = "-" if result.latency_ms is None else f"{result.latency_ms:,.0f} ms"
            error = " ".join(str(part) for part in (result.kind, result.status) if part)
            if result.detail:  # the first line is enough here; `events --type probe` has the rest
                error += ": " + (result.detail if len(result.detail) <= 80 else result.detail[:79] + "…")
            table.add_row(result.model, Text(result.state, style=styles[result.state]), latency, error)
        _print_whole(table)
    if not report.ok:
        from .output import note

        for name, healthy in report.chains.items():
            if not healthy:
                note(f"llmfail: chain {name!r} has no healthy entry", style="bold red")
        raise typer.Exit(ExitCode.FAILED)


def _print_whole(table: RenderableType) -> None:
    """A terminal gets the table fitted to its width; a pipe or a file gets every column whole
    (Rich would otherwise squeeze a wide table into 80 columns of `…`). The wide print goes
    through a console of its own: the shared one's width must stay as detected."""
    from rich.console import Console
    from rich.measure import Measurement

    from .output import stdout

    out = stdout()
    needed = Measurement.get(out, out.options.update_width(1000), table).maximum
    if out.is_terminal or needed <= out.width:
        out.print(table)
        return
    Console(file=out.file, width=needed).print(table)  # colour detected as for the shared one


def _stats_table(rows: list[ModelStats]) -> Table:
    """`stats` for people: one line per model, states coloured, times in ms."""
    from rich.table import Table
    from rich.text import Text

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:,.0f}"

    styles = {"healthy": "green", "slow": "yellow", "half-open": "cyan", "benched": "bold yellow", "manual": "magenta"}
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in (
        "model",
        "state",
        "requests",
        "success",
        "failovers",
        "benched",
        "recovered",
        "p50/p95 ms",
        "ttft p50/p95",
    ):
        table.add_column(column, justify="left" if column in ("model", "state") else "right", no_wrap=True)
    table.add_column("errors", overflow="fold")  # last: the one column that may wrap on a narrow terminal
    for row in rows:
        rate = f"{row.success_rate:.1%}" if row.success_rate is not None else "-"
        errors = ", ".join(f"{kind} {n}" for kind, n in sorted(row.errors.items(), key=lambda kv: -kv[1])) or "-"
        state = row.reported_state  # "no data" rather than "healthy" for a model nothing was asked of
        table.add_row(
            row.model,
            Text(state, style=styles.get(state, "dim")),
            str(row.requests),
            rate,
            str(row.failovers),
            str(row.benched),
            str(row.recoveries),
            f"{ms(row.p50_ms)}/{ms(row.p95_ms)}",
            f"{ms(row.ttft_p50_ms)}/{ms(row.ttft_p95_ms)}",
            errors,
        )
    return table


# --------------------------------------------------------------------------- simulate, mock-server
# Parse, call `llmfail.simulate` / `llmfail.mock_server`, print. Nothing is decided here.


def _duration_option(option: str, text: str | None) -> float | None:
    """A DURATION option's seconds (None when not given); a bad one is a usage error."""
    if text is None:
        return None
    from .durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None


#: Options `simulate` and `replay` share: the same flags check the same figures.
_SEED = typer.Option(0, "--seed", help="Randomness seed: the same seed gives the same report.")
_EXPECT_SUCCESS_RATE = typer.Option(
    None,
    "--expect-success-rate",
    metavar="R",
    help="Fail (exit 1) unless at least this share of requests is answered.",
)
_EXPECT_P99 = typer.Option(
    None,
    "--expect-p99",
    "--expect-max-p99",
    metavar="DURATION",
    help="Fail unless the simulated p99 latency is at most this.",
)
_EXPECT_MAX_FAILOVERS = typer.Option(
    None, "--expect-max-failovers", metavar="N", help="Fail if there are more failovers than this."
)
_EXPECT_SERVED_BY = typer.Option(
    None,
    "--expect-served-by",
    metavar="MODEL=SHARE",
    help="Fail unless MODEL answers at least this share of requests (repeatable).",
)
_JUNIT = typer.Option(None, "--junit", metavar="PATH", help="Write JUnit XML: one testcase per expectation.")


@app.command(
    epilog=examples(
        "llmfail simulate --chain prod --fail-rate 429 --requests 200 --seed 1",
        "llmfail simulate --fail-rate 503=0.3 --expect-success-rate 0.99 --junit report.xml",
        "llmfail simulate --scenario outage.yaml --json",
    )
)
def simulate(
    chain: str | None = typer.Option(
        None, "--chain", "-c", help="Chain to exercise (default: the scenario's, else the config's first)."
    ),
    fail_rate: list[str] | None = typer.Option(
        None,
        "--fail-rate",
        metavar="[MODEL:]FAULT[=RATE]",
        help="Inject a fault (repeatable). FAULT: an HTTP status (429@20s: one asking to retry after 20 s), timeout, reset, malformed, slow:DURATION, stream-cut, content-filter, context-length. MODEL defaults to the chain's first entry; RATE to 1.",
    ),
    latency: str | None = typer.Option(
        None, "--latency", metavar="DURATION", help="Fake providers' base latency, jittered x0.5-1.5 (default 200ms)."
    ),
    requests: int | None = typer.Option(None, "--requests", min=1, help="Requests to send (default 100)."),
    concurrency: int | None = typer.Option(
        None, "--concurrency", min=1, help="Requests in flight at once (default 1)."
    ),
    seed: int = _SEED,
    scenario: str | None = typer.Option(
        None,
        "--scenario",
        metavar="FILE.yaml",
        help="Timed phases of faults at a request rate: a YAML file with `rate`, `duration` and `phases` (docs/scenarios.md).",
    ),
    stream: bool = typer.Option(False, "--stream", help="Ask the fake providers to stream their answers."),
    expect_success_rate: float | None = _EXPECT_SUCCESS_RATE,
    expect_p99: str | None = _EXPECT_P99,
    expect_max_failovers: int | None = _EXPECT_MAX_FAILOVERS,
    expect_served_by: list[str] | None = _EXPECT_SERVED_BY,
    junit: str | None = _JUNIT,
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Run a chain against fake providers with injected faults, on virtual time: no network, no keys.

    The state DB is private to the run unless the global --db FILE is given: then
    that DB's running benches apply, and the run's events are written there
    stamped so that the simulated timeline ends at the wall clock (never in the
    future). A --fail-rate naming a `mock` entry replaces that entry's own
    `fail:` for the run. Ctrl-C prints the report so far and exits 130.
    """
    from .simulate import Plan, load_scenario, parse_fault_specs
    from .simulate import simulate as run_simulation

    plan_scenario = load_scenario(scenario) if scenario else None
    if plan_scenario is not None and (requests is not None or concurrency is not None):
        raise UsageError(
            "--requests/--concurrency do not apply to --scenario",
            hint="the scenario's rate and duration decide how many requests arrive",
        )
    faults = parse_fault_specs(fail_rate or [])
    if junit:
        _check_writable("--junit", junit)
    config = load()
    name = chain or (plan_scenario.chain if plan_scenario else None) or next(iter(config.chains))
    _warn_replaced_mock_faults(config.chain(name), faults, plan_scenario)
    expectations = _expectations(
        config.chain(name).models, expect_success_rate, expect_p99, expect_max_failovers, expect_served_by
    )
    plan = Plan(
        name,
        faults,
        requests or 100,
        concurrency or 1,
        seed,
        _duration_option("--latency", latency),
        stream,
        plan_scenario,
        expectations,
    )
    if json_out:
        report = run_simulation(config, plan, db=_opts.db)
    else:
        from .output import stderr
        from .simulate.render import progress, render

        with progress(stderr()) as on_progress:
            report = run_simulation(config, plan, db=_opts.db, on_progress=on_progress)
        _print_whole(render(report))
    _finish_simulation(report, junit, report.to_json() if json_out else None)


def _finish_simulation(report: Report, junit: str | None, payload: dict[str, Any] | None) -> None:
    """What follows a simulation: the JUnit file, the JSON (when asked), and the exit code
    (130 when interrupted, 1 when an expectation is not met)."""
    if junit:
        from .simulate.junit import write_junit

        write_junit(report, junit)
    if payload is not None:
        from .output import emit_json

        emit_json(payload)
    if report.interrupted:
        from .output import note

        note(
            f"llmfail: interrupted after {plural(report.requests, 'request')}: the report covers those only",
            style="bold yellow",
        )
        raise typer.Exit(ExitCode.INTERRUPTED)
    unmet = [e for e in report.expectations if not e.ok]
    if unmet:
        from .output import note

        for e in unmet:
            note(f"llmfail: expectation not met: {e.name} {e.expected} (got {e.actual:g})", style="bold red")
        raise typer.Exit(ExitCode.FAILED)


def _expectations(
    models: Sequence[str],
    success_rate: float | None,
    p99: str | None,
    max_failovers: int | None,
    served_by: list[str] | None,
) -> tuple[Expectation, ...]:
    from .simulate import build_expectations

    return build_expectations(
        success_rate=success_rate, p99=p99, max_failovers=max_failovers, served_by=served_by or [], models=models
    )


@app.command(
    epilog=examples(
        "llmfail replay --since 1h",
        "llmfail replay --from 2026-12-04T02:00Z --to 2026-12-04T03:30Z --chain prod --save outage.yaml",
        "llmfail simulate --scenario outage.yaml --expect-success-rate 0.99 --junit out.xml",
    )
)
def replay(
    since: str | None = typer.Option(
        None, "--since", metavar="DURATION", help="Replay the last DURATION of the event log (default 1h)."
    ),
    start: str | None = typer.Option(
        None, "--from", metavar="TIME", help="Start of the window: ISO 8601, UTC unless it names an offset."
    ),
    end: str | None = typer.Option(None, "--to", metavar="TIME", help="End of the window (default: now)."),
    chain: str | None = typer.Option(
        None, "--chain", "-c", help="Chain to replay (default: the one with the most requests in the window)."
    ),
    save: str | None = typer.Option(
        None, "--save", metavar="FILE.yaml", help="Write the derived scenario, for `simulate --scenario` in CI."
    ),
    seed: int = _SEED,
    max_requests: int | None = typer.Option(
        None,
        "--max-requests",
        min=0,
        metavar="N",
        help="Simulate at most N requests (default 10,000): a busier window is replayed at a thinned rate, "
        "where failovers, benches and tail latency no longer compare with the log's (0: no limit).",
    ),
    expect_success_rate: float | None = _EXPECT_SUCCESS_RATE,
    expect_p99: str | None = _EXPECT_P99,
    expect_max_failovers: int | None = _EXPECT_MAX_FAILOVERS,
    expect_served_by: list[str] | None = _EXPECT_SERVED_BY,
    junit: str | None = _JUNIT,
    json_out: bool = typer.Option(False, "--json", help="Print {chain, window, then, now, scenario} as JSON."),
) -> None:
    """Turn a window of the event log into a scenario and replay it against the current config: then vs now.

    Reads the window (any state store), derives the arrival rate and each
    model's faults phase by phase, then simulates that scenario on today's
    config (fake providers, virtual time, a private state DB: nothing is
    written to the log) and prints what the log saw beside what the current
    config would do. The saved scenario holds no prompt, answer, error text,
    key, host or URL: only model names, fault kinds, rates and durations.
    """
    import time

    from .simulate.replay import MAX_REQUESTS, Span, pick_chain, scenario_yaml, window
    from .simulate.replay import replay as run_replay

    limit = MAX_REQUESTS if max_requests is None else max_requests
    span: Span = window(since, start, end, now=time.time())
    for option, path in (("--save", save), ("--junit", junit)):
        if path:
            _check_writable(option, path)
    config = load()
    store = open_existing_db()
    if store is None:  # no log at all: a chain the config lacks is still exit 2, else nothing to replay
        pick_chain([], chain, list(config.chains), span)
        raise AssertionError("unreachable: an empty window always raises")
    try:
        result = run_replay(
            config,
            store,
            span,
            chain=chain,
            seed=seed,
            expectations=lambda models: _expectations(
                models, expect_success_rate, expect_p99, expect_max_failovers, expect_served_by
            ),
            max_requests=limit,
        )
    finally:
        store.close()
    from .output import note, warn

    for model, attempts in result.derivation.unknown_models.items():
        warn(
            f"{model} is in the log ({plural(attempts, 'attempt')}) but not in chain {result.chain} now: "
            "its faults are left out and its requests walk the chain as it is now"
        )
    if result.thinned < 1:
        note(
            f"llmfail: simulated {result.now.requests} of the window's {result.derivation.scenario.requests} "
            f"arrivals (--max-requests {limit}): shares compare, but failovers, benches and tail latency "
            "do not scale with the traffic (--max-requests 0 simulates it all)",
            style="yellow",
        )
    if save:
        from pathlib import Path

        Path(save).write_text(scenario_yaml(result.derivation, save), encoding="utf-8")
        note(f"llmfail: scenario saved to {save}; run it with: llmfail simulate --scenario {save}")
    if not json_out:
        from .simulate.render import render_replay

        _print_whole(render_replay(result))
    _finish_simulation(result.now, junit, result.to_json() if json_out else None)


def _check_writable(option: str, path: str) -> None:
    """Fail before the work when an output file could not be written after it."""
    from pathlib import Path

    folder = Path(path).parent
    if not folder.is_dir():
        raise UsageError(f"{option} {path}: the folder {folder} does not exist", hint=f"create it: mkdir -p {folder}")
    if not os.access(folder, os.W_OK) or (Path(path).exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"{option} {path}: not writable", hint="pick a path you can write to")


def _warn_replaced_mock_faults(chain: Chain, faults: Sequence[FaultSpec], scenario: Scenario | None) -> None:
    """Say when a --fail-rate (or a scenario phase) takes the place of a `mock` entry's own `fail:`."""
    from .output import warn

    named = {spec.model for spec in (*faults, *(f for p in (scenario.phases if scenario else ()) for f in p.faults))}
    first = chain.entries[0].model if chain.entries else None
    for entry in chain.entries:
        mock = entry.provider.mock if entry.provider.type == "mock" else None
        if mock is not None and mock.fail and (entry.model in named or (None in named and entry.model == first)):
            warn(f"--fail-rate replaces {entry.model}'s own `fail: {mock.fail}` while it applies")


@app.command(
    "mock-server",
    epilog=examples(
        "llmfail mock-server --port 8765 --fail-rate gpt-4o:503=0.2",
        "llmfail mock-server --protocol openai --fail-rate stream-cut=0.5",
    ),
)
def mock_server(
    port: int = typer.Option(8765, "--port", "-p", min=0, max=65535, help="Port to listen on (0: any free port)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback unless --allow-remote)."),
    protocol: list[str] | None = typer.Option(
        None,
        "--protocol",
        help="Serve only these protocols: openai, anthropic, ollama, gemini (repeatable; default all).",
    ),
    fail_rate: list[str] | None = typer.Option(
        None,
        "--fail-rate",
        metavar="[MODEL:]FAULT[=RATE]",
        help="Inject a fault (repeatable); MODEL is the model name a request asks for (default: every model).",
    ),
    scenario: str | None = typer.Option(
        None,
        "--scenario",
        metavar="FILE.yaml",
        help="Switch faults by phase on the wall clock from start (rate and duration do not apply).",
    ),
    latency: str | None = typer.Option(
        None, "--latency", metavar="DURATION", help="Base latency of every answer, jittered x0.5-1.5."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Randomness seed for the faults (default: random)."),
    allow_remote: bool = typer.Option(False, "--allow-remote", help="Allow a non-loopback --host."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not log each request on stderr."),
) -> None:
    """Serve fake OpenAI/Anthropic/Ollama/Gemini endpoints with injected faults on a loopback port."""
    import asyncio

    from .mock_server import ALL_PROTOCOLS, MockServer
    from .output import note
    from .simulate import load_scenario, parse_fault_specs

    server = MockServer(
        host=host,
        port=port,
        protocols=protocol or ALL_PROTOCOLS,
        faults=parse_fault_specs(fail_rate or []),
        scenario=load_scenario(scenario) if scenario else None,
        latency=_duration_option("--latency", latency) or 0.0,
        seed=seed,
        allow_remote=allow_remote,
        log=None if quiet else note,
    )

    async def serve() -> None:
        try:
            await server.start()
        except OSError as exc:
            raise UsageError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                hint="pick another --port (0 picks a free one)",
            ) from None
        note(f"llmfail mock-server on {server.url} ({', '.join(server.protocols)}); Ctrl-C stops it", style="bold")
        width = max(map(len, server.protocols))
        for served, base_url in server.base_urls().items():
            note(f"  {served:<{width}}  base_url: {base_url}")
        await server.serve_forever()

    asyncio.run(serve())


@app.command(epilog=examples("llmfail tui", "llmfail tui --chain prod --window 5m"))
def tui(
    chain: str | None = typer.Option(
        None, "--chain", "-c", help="Show this chain, in chain order (default: every model, most troubled first)."
    ),
    window: str = typer.Option(
        "15m",
        "--window",
        metavar="DURATION",
        help="Rolling window of the requests, success %, failovers and p50 columns.",
    ),
) -> None:
    """Live dashboard: model health, what serves each chain, the newest events; b benches, u unbenches, ? help.

    Needs a terminal (exit 2 otherwise); in pipes and scripts use ls-benched, stats or events --follow."""
    from .tui import missing_terminal

    config = load()
    if chain is not None:
        config.chain(chain)  # a wrong name exits 2 before Textual is even loaded
    length = _duration("--window", window)
    if length <= 0:
        raise UsageError("--window must be longer than 0s", hint="e.g. --window 15m")
    stream = missing_terminal()
    if stream is not None:
        raise UsageError(
            f"tui needs a terminal ({stream} is not one)",
            hint="in a pipe or a script use `llmfail ls-benched`, `llmfail stats` or `llmfail events --follow`",
        )
    from .tui import create_app  # Textual is loaded only here

    create_app(config, open_db(), chain=chain, window=length).run()


@app.command(
    epilog=examples(
        "llmfail serve",
        "llmfail serve --host 0.0.0.0 --port 8080 --max-concurrency 256 --grace 30s",
        'curl -s localhost:4000/v1/chat/completions -d \'{"model": "prod", "messages": [{"role": "user", "content": "hi"}]}\'',
    )
)
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (default: loopback only)."),
    port: int = typer.Option(4000, "--port", min=0, max=65535, help="Port to listen on (0: a free one)."),
    max_concurrency: int = typer.Option(
        128, "--max-concurrency", min=1, help="Requests walked at once; past it, 503 at once (no queue)."
    ),
    grace: str = typer.Option(
        "30s", "--grace", metavar="DURATION", help="On SIGTERM, how long requests in flight get to finish."
    ),
) -> None:
    """Serve the chains as an OpenAI-compatible endpoint: POST /v1/chat/completions with model = a chain.

    Client keys: LLMFAIL_SERVE_KEYS (comma-separated bearer tokens). Operator API under /admin/:
    LLMFAIL_ADMIN_TOKEN. SIGHUP reloads the config; SIGTERM drains and exits 0."""
    grace_s = _duration("--grace", grace)
    config = load()
    store = open_request_store(config)
    from .serve.server import ServeSettings, run_server

    settings = ServeSettings(
        host=host,
        port=port,
        max_concurrency=max_concurrency,
        grace=grace_s,
        keys=[k.strip() for k in os.environ.get("LLMFAIL_SERVE_KEYS", "").split(",") if k.strip()],
        admin_token=os.environ.get("LLMFAIL_ADMIN_TOKEN") or None,
    )
    try:
        code = run_server(config, store, settings, load, debug=_opts.debug)
    finally:
        store.close()
    raise typer.Exit(code)


# --------------------------------------------------------------------------- state: moving between stores

_STATE_COPY_EXAMPLES = (
    "llmfail state copy ~/.local/state/llmfail/state.db redis://redis.internal:6379/0",
    "llmfail state copy redis://redis.internal:6379/0 backup.db --src-namespace prod",
)
state_app = typer.Typer(
    help="Move shared state between stores (a SQLite file, a Redis URL).",
    no_args_is_help=True,
    epilog=examples(*_STATE_COPY_EXAMPLES),
)
app.add_typer(state_app, name="state")


@state_app.command("copy", epilog=examples(*_STATE_COPY_EXAMPLES))
def state_copy(
    src: str = typer.Argument(..., metavar="SRC", help="Store to copy from: a path, sqlite:///path or redis://…"),
    dst: str = typer.Argument(..., metavar="DST", help="Store to copy into: a path, sqlite:///path or redis://…"),
    src_namespace: str | None = typer.Option(
        None, "--src-namespace", metavar="NS", help="SRC's Redis namespace (default: the config's state.namespace)."
    ),
    dst_namespace: str | None = typer.Option(
        None, "--dst-namespace", metavar="NS", help="DST's Redis namespace (default: the config's state.namespace)."
    ),
    force: bool = typer.Option(False, "--force", help="Copy into a destination that already holds state."),
    json_out: bool = typer.Option(False, "--json", help='Print {"benches", "demotions", "events"}.'),
) -> None:
    """Copy benches (every state) and the event log (oldest first, original times) from SRC to DST.

    Moving from one machine's SQLite file to a fleet's Redis keeps the history:
    `llmfail state copy ~/.local/state/llmfail/state.db redis://cache:6379/0`."""
    from dataclasses import replace

    from .store.copy import copy_state, is_empty
    from .store.select import select_store

    config, _ = load_for_defaults(required=False)
    section = config.state if config is not None else None
    source, target = select_store(src, section), select_store(dst, section)
    if src_namespace:
        source = replace(source, namespace=src_namespace)
    if dst_namespace:
        target = replace(target, namespace=dst_namespace)
    if source.same_store(target):
        raise UsageError("SRC and DST are the same store", hint="name two different stores")
    if not source.exists():
        raise UsageError(f"no state DB at {source.shown}", hint="check the SRC path")
    from_store, to_store = source.open(), target.open()
    if not force and not is_empty(to_store):
        raise LlmfailError(
            f"{target.shown} already holds events or benches; nothing was copied",
            hint="pass --force to add SRC's state to it (a copied bench never shortens one there)",
        )
    done = copy_state(from_store, to_store, force=True)
    if json_out:
        from .output import emit_json

        emit_json({"benches": done.benches, "demotions": done.demotions, "events": done.events})
    else:
        from .output import stdout

        stdout().print(
            f"copied {done.benches} bench(es), {done.demotions} demotion(s) and {done.events} event(s) "
            f"from {source.shown} to {target.shown}",
            markup=False,
            highlight=False,
        )


def main() -> None:
    """Console-script entry point."""
    global _owns_process
    _owns_process = True
    _app_for(sys.argv[1:])()


#: Global options that take a value (so that value is not read as the command's name).
_VALUED_OPTIONS = frozenset({"--config", "--db"})


def _app_for(args: list[str]) -> typer.Typer:
    """The app with only the command `args` name, when it names one: Typer builds a Click command
    for every registered command on each start (~6 ms of a one-shot `run`, `benchmarks/startup.py`),
    and a process runs one. Anything else (no command, a typo, a sub-group, shell completion)
    gets the whole app, so help, errors and completion are unchanged."""
    if "_LLMFAIL_COMPLETE" in os.environ:  # shell completion walks every command
        return app
    value_next = False
    for arg in args:
        if value_next:
            value_next = False
        elif arg in _VALUED_OPTIONS:
            value_next = True
        elif not arg.startswith("-"):
            chosen = [c for c in app.registered_commands if _command_name(c) == arg]
            if not chosen:
                return app
            lean = copy.copy(app)
            lean.registered_commands, lean.registered_groups = chosen, []
            return lean
    return app


def _command_name(info: CommandInfo) -> str | None:
    """The name Typer gives a registered command: its own, or its function's with `-` for `_`."""
    if info.name:
        return info.name
    return info.callback.__name__.replace("_", "-") if info.callback is not None else None


if __name__ == "__main__":
    main()
