"""`llmfail run` with stdout on a terminal (a pty): a cut stream restarts on the next entry, visibly."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

from .test_streaming import CLI_WIRE, WORDS, cli_config, cli_env, route, stop


def run_at_a_terminal(tmp_path: Path, config: Path) -> tuple[int, bytes, str]:
    """`llmfail run hi` with stdout on a pty; its exit code, what the terminal showed, and stderr."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmfail.cli", "run", "hi"],
        stdout=follower,
        stderr=subprocess.PIPE,
        env=cli_env(tmp_path, config),
    )
    os.close(follower)
    try:
        _, err = proc.communicate(timeout=20)
        shown = b""
        try:
            while chunk := os.read(leader, 4096):
                shown += chunk
        except OSError:  # EIO: the child closed the terminal
            pass
    finally:
        os.close(leader)
        stop(proc)
    return proc.returncode, shown.replace(b"\r\n", b"\n"), err.decode()


def test_a_cut_stream_at_a_terminal_restarts_on_the_next_entry_with_a_marker(server: Any, tmp_path: Path):
    route(server, CLI_WIRE, "p", CLI_WIRE.stream(WORDS, cut=True))
    route(server, CLI_WIRE, "s", CLI_WIRE.stream("the whole answer"))
    code, shown, err = run_at_a_terminal(tmp_path, cli_config(tmp_path, server))
    assert code == 0, err
    assert shown == b"one two \nthe whole answer\n"
    assert "[p/m1 cut off — restarting with s/m2]" in err
    assert "error" not in err


def test_a_config_that_sets_mid_stream_error_keeps_the_error_at_a_terminal(server: Any, tmp_path: Path):
    route(server, CLI_WIRE, "p", CLI_WIRE.stream(WORDS, cut=True))
    secondary = route(server, CLI_WIRE, "s", CLI_WIRE.stream("the whole answer"))
    code, shown, err = run_at_a_terminal(tmp_path, cli_config(tmp_path, server, mid_stream="error"))
    assert code == 1
    assert shown == b"one two \n"
    assert "llmfail: error: p/m1: stream cut after 8 characters (HTTP 200)" in err
    assert secondary.count == 0


def test_the_restart_default_is_only_for_a_terminal_a_pipe_gets_the_whole_answer_from_the_next_entry(
    server: Any, tmp_path: Path
):
    route(server, CLI_WIRE, "p", CLI_WIRE.stream(WORDS, cut=True), CLI_WIRE.stream(WORDS, cut=True))
    route(server, CLI_WIRE, "s", CLI_WIRE.answer("the whole answer"))
    config = cli_config(tmp_path, server)
    done = subprocess.run(
        [sys.executable, "-m", "llmfail.cli", "run", "hi"],
        capture_output=True,
        text=True,
        env=cli_env(tmp_path, config),
        timeout=20,
        check=False,
    )
    assert done.returncode == 0 and done.stdout == "the whole answer\n"
