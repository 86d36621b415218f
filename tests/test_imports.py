"""Import contracts: the fast commands and `import llmfail` stay cheap (each checked in a fresh process)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

#: Modules the fast commands must never load: the dashboard, HTTP clients, the engine and its adapters.
HEAVY = (
    "textual",
    "httpx",
    "aiohttp",
    "llmfail.providers",
    "llmfail.engine",
    "llmfail.serve",
    "jsonschema",
    "opentelemetry",
)

RUN_CLI = textwrap.dedent(
    """
    import json, sys
    out, sys.argv = sys.argv[1], ["llmfail", *sys.argv[2:]]
    from llmfail.cli import main
    try:
        main()
    except SystemExit as stop:
        code = stop.code
    else:
        code = 0
    with open(out, "w") as f:
        json.dump({"code": code, "modules": sorted(sys.modules)}, f)
    """
)


def cli_modules(tmp_path: Path, *args: str) -> tuple[int, list[str]]:
    """Run the CLI's main in a fresh interpreter; its exit code and every module it loaded."""
    out = tmp_path / "modules.json"
    subprocess.run([sys.executable, "-c", RUN_CLI, str(out), *args], check=False, capture_output=True, timeout=60)
    report = json.loads(out.read_text())
    return report["code"] or 0, report["modules"]


def heavy_in(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["ls-benched"],
        ["ls-benched", "--json"],
        ["bench", "openai/gpt-4o", "--for", "1m", "--reason", "deploy"],
        ["bench", "openai/gpt-4o", "--json"],
        ["unbench", "--all"],
        ["events", "--json"],
        ["chains", "--json"],
        ["check"],
        ["schema"],
        ["stats", "--format", "prometheus"],
        ["tui", "--help"],
        ["serve", "--help"],
        ["replay", "--help"],
    ],
    ids=" ".join,
)
def test_operator_commands_never_import_textual_httpx_or_a_provider(tmp_path: Path, args: list[str]):
    code, modules = cli_modules(tmp_path, *args)
    assert code == 0
    assert "llmfail.cli" in modules  # the probe really ran the CLI in-process
    assert heavy_in(modules) == []


@pytest.mark.parametrize("args", [["ls-benched", "--json"], ["events", "--json"]], ids=" ".join)
def test_json_output_does_not_load_rich_console(tmp_path: Path, args: list[str]):
    """Scripts poll these in loops; Rich's console (~20 ms) is for people."""
    code, modules = cli_modules(tmp_path, *args)
    assert code == 0 and "llmfail.output" in modules
    assert "rich.console" not in modules


def test_ls_benched_json_loads_no_journal_logging_or_sockets(tmp_path: Path):
    """The form scripts poll in a loop only reads: writing machinery stays unloaded."""
    code, modules = cli_modules(tmp_path, "ls-benched", "--json")
    assert code == 0
    assert {"llmfail.journal", "logging", "socket", "hashlib", "getpass"}.isdisjoint(modules)


def test_the_probe_would_see_a_heavy_import(tmp_path: Path):
    """The contract test above is only worth something if loading the engine shows up in it."""
    code, modules = cli_modules(tmp_path, "run", "hi", "--chain", "demo", "--no-stream", "--quiet")
    assert code == 0
    assert "httpx" in heavy_in(modules) and "llmfail.providers" in heavy_in(modules)


def test_a_one_shot_run_over_plain_http_imports_no_http_stack_but_httpx(tmp_path: Path, server):
    """One request: importing aiohttp costs more start-up than its per-request speed saves, and
    plain HTTP goes straight on asyncio, so neither httpcore (with h11 and anyio) nor the CA bundle loads."""
    server.expect_request("/v1/chat/completions").respond_with_json(
        {"choices": [{"index": 0, "message": {"role": "assistant", "content": "pong"}, "finish_reason": "stop"}]}
    )
    config = tmp_path / "chains.yaml"
    config.write_text(f"providers:\n  p: {{type: openai, base_url: '{server.url_for('/v1')}'}}\nchains:\n  c: [p/m1]\n")
    code, modules = cli_modules(tmp_path, "--config", str(config), "run", "ping", "--no-stream", "--quiet")
    assert code == 0 and len(server.log) == 1
    assert "httpx" in heavy_in(modules) and "aiohttp" not in heavy_in(modules)
    assert [m for m in modules if m.split(".")[0] in ("httpcore", "h11", "anyio", "certifi", "aiohttp")] == []
    assert not any(m.startswith("llmfail.serve") for m in modules)  # the gateway is its own command
    assert (
        "llmfail.actions" not in modules and "llmfail.audit" in modules
    )  # the config audit, not the operator commands


def test_importing_llmfail_loads_no_dependency_at_all():
    code = (
        "import sys, llmfail; print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('httpx', 'yaml', 'rich', 'typer', 'textual', 'llmfail')))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "['llmfail']"


def test_each_exported_name_loads_only_what_it_needs():
    code = "import sys, llmfail; llmfail.ChainExhausted; llmfail.Event; print('httpx' in sys.modules, 'yaml' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "False"]


def test_a_tui_with_a_wrong_chain_exits_2_before_loading_textual(tmp_path: Path):
    code, modules = cli_modules(tmp_path, "tui", "--chain", "nope")
    assert code == 2
    assert "textual" not in heavy_in(modules)


def test_the_dashboards_data_layer_loads_no_textual():
    """`llmfail.tui` itself is lazy: its plain-data modules are usable (and tested) without Textual."""
    code = "import sys, llmfail.tui, llmfail.tui.feed, llmfail.tui.health; print('textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_the_probe_would_see_textual_when_the_dashboard_is_built():
    code = "import sys, llmfail.tui; llmfail.tui.create_app; print('textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "True"


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["check"],
        ["chains", "--json"],
        ["ls-benched", "--json"],
        ["events", "--json"],
        ["bench", "openai/gpt-4o", "--for", "1m"],
        ["stats", "--json"],
        ["run", "hi", "--chain", "demo", "--no-stream", "--quiet"],
    ],
    ids=" ".join,
)
def test_sqlite_backed_commands_never_import_redis(tmp_path: Path, args: list[str]):
    """`redis`/`hiredis` are loaded only when a Redis URL is chosen (`llmfail.store.select`)."""
    code, modules = cli_modules(tmp_path, *args)
    assert code == 0 and "llmfail.cli" in modules
    assert [m for m in modules if m.split(".")[0] in ("redis", "hiredis") or m == "llmfail.store.redis"] == []


def test_rendering_the_cli_reference_loads_no_heavy_module_and_the_cli_never_loads_the_renderer(tmp_path: Path):
    """docs/cli.md is rendered from the app's declarations alone; `--help` does not pay for the renderer."""
    code = (
        "import json, sys; from llmfail.cli_reference import render; render(); print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60)
    assert heavy_in(json.loads(out.stdout)) == []
    _, modules = cli_modules(tmp_path, "--help")
    assert "llmfail.cli_reference" not in modules


def test_init_imports_no_http_client_schema_validator_or_telemetry(tmp_path: Path):
    """`init` probes Ollama with the standard library: no httpx, no engine."""
    code, modules = cli_modules(tmp_path, "init", str(tmp_path / "chains.yaml"))
    assert code == 0 and "llmfail.starter" in modules
    assert heavy_in(modules) == []


def test_the_engine_loads_no_telemetry_until_it_is_instrumented():
    """`llmfail.otel` is opt-in: an app that never calls `instrument` pays nothing for it."""
    probe = "import sys, llmfail.engine, llmfail.client; print(sorted(m for m in sys.modules if 'opentelemetry' in m or m == 'llmfail.otel'))"
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_replay_json_loads_neither_the_dashboard_nor_redis(tmp_path: Path):
    """`replay --json` reads the log and simulates (httpx and the engine, as `simulate` does):
    no Textual, and no Redis client on a SQLite store."""
    import time

    from llmfail.events import REQUEST, Event
    from llmfail.store.sqlite import SqliteStore

    db = tmp_path / "state.db"
    store = SqliteStore(str(db))
    now = time.time()
    store.append(
        [
            Event(
                REQUEST,
                now - 60 + i,
                chain="demo",
                model="mock/echo",
                latency_ms=5,
                data={"ok": True, "answered_by": "mock/echo"},
            )
            for i in range(30)
        ]
    )
    store.close()
    code, modules = cli_modules(tmp_path, "--db", str(db), "replay", "--chain", "demo", "--json")
    assert code == 0 and "llmfail.simulate.replay" in modules
    assert "textual" not in heavy_in(modules) and "llmfail.simulate.render" not in modules
    assert [m for m in modules if m.split(".")[0] in ("redis", "hiredis")] == []
