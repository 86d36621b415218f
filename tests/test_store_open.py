"""`open_store` picks a backend from a path or URL; `StoreTarget` hands one store to other processes."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmfail.cli import app
from llmfail.errors import ExitCode, StateError, UsageError
from llmfail.store import KNOWN_SCHEMES, StoreTarget, open_store, sqlite_file
from llmfail.store.sqlite import BUSY_TIMEOUT_S, SqliteStore

T0 = 1_700_000_000.0


@pytest.mark.parametrize("form", ["plain", "sqlite:///abs", "sqlite:relative"])
def test_a_path_or_sqlite_url_opens_that_sqlite_file(tmp_path: Path, form: str) -> None:
    target = {
        "plain": str(tmp_path / "a.db"),
        "sqlite:///abs": f"sqlite://{tmp_path / 'a.db'}",
        "sqlite:relative": "sqlite:a.db",
    }[form]  # the hermetic fixture runs every test in tmp_path
    store = open_store(target)
    try:
        assert isinstance(store, SqliteStore) and Path(store.path).resolve() == tmp_path / "a.db"
        file = sqlite_file(target)
        assert file is not None and file.resolve() == tmp_path / "a.db"
    finally:
        store.close()


def test_no_target_is_llmfail_db_and_it_may_be_a_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMFAIL_DB", f"sqlite://{tmp_path / 'env.db'}")
    with open_store() as store:  # type: ignore[attr-defined]
        assert store.path == str(tmp_path / "env.db")
    monkeypatch.setenv("LLMFAIL_DB", "ftp://host/x")
    with pytest.raises(UsageError):
        open_store()


def test_a_windows_drive_or_a_colon_in_a_file_name_is_a_path() -> None:
    assert sqlite_file(r"C:\state\state.db") == Path(r"C:\state\state.db")
    assert sqlite_file("backup:1.db") == Path("backup:1.db")


@pytest.mark.parametrize("url", ["ftp://user:hunter2@host/x", "http://x", "postgres://db/llmfail", "sqlite://host/x"])
def test_an_unknown_scheme_or_a_sqlite_host_is_a_usage_error_that_leaks_no_password(url: str) -> None:
    with pytest.raises(UsageError) as err:
        open_store(url)
    assert err.value.exit_code == ExitCode.USAGE and "hunter2" not in str(err.value) + (err.value.hint or "")
    if not url.startswith("sqlite"):
        assert all(scheme in err.value.message for scheme in KNOWN_SCHEMES)


def test_an_unknown_scheme_exits_2_through_the_cli_naming_the_known_ones() -> None:
    result = CliRunner().invoke(app, ["--db", "ftp://x", "ls-benched"])
    assert result.exit_code == 2
    assert "sqlite, redis, rediss, unix, valkey, valkeys" in result.output
    assert "Traceback" not in result.output


def test_a_redis_url_without_the_redis_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # `import redis` now fails, as when it is not installed
    monkeypatch.delitem(sys.modules, "llmfail.store.redis", raising=False)
    for url in ("redis://127.0.0.1:1/0", "valkey://h", "valkeys://h", "rediss://h", "unix:///tmp/redis.sock"):
        with pytest.raises(StateError) as err:
            open_store(url)
        assert "Redis" in err.value.message and err.value.hint == "pip install 'llmfail[redis]'"
        assert sqlite_file(url) is None


def test_busy_timeout_reaches_the_connection(tmp_path: Path) -> None:
    quick = open_store(str(tmp_path / "a.db"), busy_timeout=0.1)
    default = open_store(str(tmp_path / "a.db"))
    try:
        assert isinstance(quick, SqliteStore) and isinstance(default, SqliteStore)
        with quick._read() as conn:
            assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 100
        with default._read() as conn:
            assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == BUSY_TIMEOUT_S * 1000
    finally:
        quick.close()
        default.close()


def test_a_store_target_is_plain_data_a_child_process_can_open(tmp_path: Path) -> None:
    target = StoreTarget(f"sqlite://{tmp_path / 'shared.db'}")
    assert pickle.loads(pickle.dumps(target)) == target and hash(target) == hash(StoreTarget(target.url))
    code = (
        "import pickle, sys; t = pickle.loads(bytes.fromhex(sys.argv[1])); "
        f"t.open().bench('a/m', now={T0}, until={T0 + 60}, manual=True, reason='from the child', kind=None)"
    )
    subprocess.run([sys.executable, "-c", code, pickle.dumps(target).hex()], check=True)
    store = target.open()
    try:
        assert store.states(["a/m"])["a/m"].reason == "from the child"
    finally:
        store.close()
