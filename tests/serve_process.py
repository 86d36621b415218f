"""`llmfail serve` as a real subprocess on a free loopback port (the SDK tests and benchmarks/gateway.py).

The server is started with `--port 0` and its stderr goes to a file: the port is read
from the "listening on" line, and the access lines stay there for assertions.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

LISTENING = re.compile(r"listening on (http://[\d.]+:\d+)")


class ServeProcess:
    """One `llmfail serve` process; `url` is its base URL once `start()` returned.

    `db` is a SQLite path or a store URL (a string: a Path would fold redis:// into redis:/)."""

    def __init__(
        self,
        config: Path,
        db: Path | str,
        log: Path,
        *,
        env: Mapping[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.config, self.db, self.log = config, db, log
        self.env = {**os.environ, **(env or {})}
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 20.0) -> ServeProcess:
        command = [sys.executable, "-m", "llmfail.cli", "--config", str(self.config), "--db", str(self.db)]
        with self.log.open("wb") as err:
            self.proc = subprocess.Popen(
                [*command, "serve", "--port", "0", *self.args],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=self.env,
            )
        self.url = self.wait_for(LISTENING, timeout).group(1)
        return self

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: re.Pattern[str] | str, timeout: float = 10.0) -> re.Match[str]:
        """The first match of `pattern` in the server's stderr, polled until `timeout`."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            found = regex.search(self.stderr())
            if found:
                return found
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"llmfail serve exited {self.proc.returncode}:\n{self.stderr()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {regex.pattern!r} in llmfail serve's stderr:\n{self.stderr()}")
            time.sleep(0.02)

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then the exit code (killed if it has not exited within `timeout`)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
