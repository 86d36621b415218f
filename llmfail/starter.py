"""`llmfail init`: a commented starter chains.yaml built from what this machine has.

It looks for two things: the provider key variables that are set (by name only:
a key's value is never read into the file, which may be committed), and a local
Ollama answering `GET /api/tags` (at `$OLLAMA_HOST` when set, as Ollama's own
tools do, else 127.0.0.1:11434), with a short timeout so `init` never hangs on
a firewalled port. One chain `main` lists what it found, cloud providers first;
with nothing found it is the built-in mock, so `llmfail run "hello"` works at
once. The file never replaces an existing one unless asked (`--force`).

Its settings and their comments come from the same declarations as the loader
(`config.fields.POLICY_PARSERS`), so the starter's defaults are the real ones.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .config.fields import POLICY_PARSERS
from .config.provider_types import PROVIDER_TYPES
from .errors import LlmfailError

#: How long the Ollama probe may take: a local server answers in milliseconds.
OLLAMA_TIMEOUT_S = 0.5

DEFAULT_OLLAMA = PROVIDER_TYPES["ollama"].base_url or "http://127.0.0.1:11434"

#: The settings the starter spells out (each at its default, with its meaning); docs/configuration.md has the rest.
STARTER_SETTINGS = ("attempts", "timeout", "cooldown", "deadline")

#: The column comments start at, and the width they wrap to.
_COMMENT_AT = 30
_WIDTH = 100


@dataclass(frozen=True)
class Found:
    """What `discover` found on this machine."""

    keys: tuple[tuple[str, str], ...]  # (provider, key variable) for each variable that is set
    ollama_url: str
    ollama_models: tuple[str, ...] | None  # None: nothing answered there


def ollama_url(environ: Mapping[str, str]) -> str:
    """Where Ollama listens: `$OLLAMA_HOST` (`host`, `host:port` or a URL, as Ollama reads it) or the default."""
    written = environ.get("OLLAMA_HOST", "").strip()
    if not written:
        return DEFAULT_OLLAMA
    is_url = "://" in written
    parts = urlsplit(written if is_url else f"http://{written}")
    host = parts.hostname or "127.0.0.1"
    host = "127.0.0.1" if host == "0.0.0.0" else host  # a server's listen-everywhere address
    host = f"[{host}]" if ":" in host else host
    # Ollama's rule: `host` alone means port 11434, a URL without a port its scheme's own (80, 443).
    port = parts.port or (443 if parts.scheme == "https" else 80 if is_url else 11434)
    return f"{parts.scheme}://{host}:{port}"


def probe_ollama(url: str, timeout: float = OLLAMA_TIMEOUT_S) -> tuple[str, ...] | None:
    """The model names a local Ollama lists at `url`, or None when nothing answers like Ollama."""
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # a local probe never goes via a proxy
    try:
        with opener.open(f"{url}/api/tags", timeout=timeout) as response:
            body = json.loads(response.read(1024 * 1024))
    except (OSError, ValueError):  # refused, timed out, not HTTP, not JSON
        return None
    models = body.get("models") if isinstance(body, dict) else None
    if not isinstance(models, list):
        return None
    return tuple(str(m["name"]) for m in models if isinstance(m, dict) and isinstance(m.get("name"), str))


def discover(environ: Mapping[str, str] | None = None, *, timeout: float = OLLAMA_TIMEOUT_S) -> Found:
    environ = os.environ if environ is None else environ
    keys = tuple(
        (kind.name, kind.api_key_env)
        for kind in PROVIDER_TYPES.values()
        if kind.api_key_env and kind.starter_model and environ.get(kind.api_key_env)
    )
    url = ollama_url(environ)
    return Found(keys, url, probe_ollama(url, timeout))


_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:+-]*")


def _scalar(text: str) -> str:
    """`text` as a YAML scalar: plain when it reads back as itself, else double-quoted (JSON is valid YAML)."""
    return text if _PLAIN.fullmatch(text) and not text.endswith(":") else json.dumps(text)


def _commented(code: str, comment: str) -> list[str]:
    """`code` with `comment` beside it from a fixed column, wrapped onto comment lines below."""
    width = _WIDTH - _COMMENT_AT - 2
    head, *rest = textwrap.wrap(comment, width) or [""]
    pad = " " * max(_COMMENT_AT, len(code) + 1)
    return [f"{code}{pad[len(code) :]}# {head}", *(f"{pad}# {line}" for line in rest)]


def _comment(text: str) -> list[str]:
    return [f"# {line}" for line in textwrap.wrap(text, _WIDTH - 2)]


def starter_text(found: Found) -> str:
    """The commented chains.yaml for what was found."""
    entries: list[tuple[str, str]] = [
        (f"{provider}/{PROVIDER_TYPES[provider].starter_model}", f"key from ${variable}")
        for provider, variable in found.keys
    ]
    if found.ollama_models:
        entries.append((f"ollama/{found.ollama_models[0]}", f"local Ollama at {found.ollama_url}, no key"))
    seen = [f"{variable} is set" for _, variable in found.keys]
    if found.ollama_models:
        seen.append(f"Ollama answers at {found.ollama_url}")
    elif found.ollama_models is not None:
        seen.append(f"Ollama answers at {found.ollama_url} but has no model (ollama pull llama3.2, then add it)")
    variables = ", ".join(kind.api_key_env for kind in PROVIDER_TYPES.values() if kind.api_key_env)
    lines = [
        "# llmfail config, written by `llmfail init`.",
        "#",
        '# `llmfail check` validates this file; `llmfail run "hello"` sends one request through the chain.',
        "# Every key is described in docs/configuration.md. For completion in your editor, run",
        "# `llmfail schema > chains.schema.json` here and make this the first line:",
        "#   # yaml-language-server: $schema=chains.schema.json",
        "#",
        "# Keys never go in this file: a provider reads its key from the environment variable",
        f"# named for it ({variables} for the built-ins).",
        "#",
    ]
    if entries:
        lines += _comment("Found: " + "; ".join(seen) + ".")
    else:
        lines += _comment(
            f"Found no provider key ({variables}) and no Ollama at {found.ollama_url}, so the chain below is "
            "the built-in mock, which echoes your prompt. Replace it with provider/model entries (like "
            "openai/gpt-4o) once a key is set, then run `llmfail check`."
        )
        if seen:
            lines += _comment("Note: " + "; ".join(seen) + ".")
        entries = [("mock/echo", "a local fake: no network, no key")]
    lines += ["", *_commented("defaults:", "every entry's policy, unless the entry overrides a key")]
    for name in STARTER_SETTINGS:
        field = POLICY_PARSERS[name]
        lines += _commented(f"  {name}: {field.default}", field.meaning)
    if found.ollama_models and found.ollama_url != DEFAULT_OLLAMA:
        lines += ["", "providers:", "  ollama:", *_commented(f"    base_url: {found.ollama_url}", "from $OLLAMA_HOST")]
    lines += ["", "chains:", *_commented("  main:", "the first chain is the default of `llmfail run`")]
    for model, why in entries:
        lines += _commented(f"    - {_scalar(model)}", why)
    return "\n".join(lines) + "\n"


def writable_target(path: str | os.PathLike[str], *, force: bool) -> Path:
    """`path`, unless it is a directory or (without `force`) an existing file: checked before
    `discover`, so a refused `init` probes nothing."""
    target = Path(path)
    if target.is_dir():
        raise LlmfailError(f"{target} is a directory", hint=f"give a file path, like {target / 'chains.yaml'}")
    if target.exists() and not force:
        raise LlmfailError(f"{target} already exists; not replacing it", hint="pass --force to replace it")
    return target


def write_starter(path: str | os.PathLike[str], text: str, *, force: bool) -> Path:
    """Write `text` to `path` (parents created); an existing file is replaced only with `force`."""
    target = writable_target(path, force=force)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if force:  # written beside it and renamed: a reader never sees half a file
            mode = target.stat().st_mode & 0o777 if target.exists() else _new_file_mode()
            with tempfile.NamedTemporaryFile("w", dir=target.parent, delete=False, encoding="utf-8") as file:
                file.write(text)
            os.chmod(file.name, mode)  # the replaced file's mode, not the temporary file's 0600
            os.replace(file.name, target)
        else:
            with open(target, "x", encoding="utf-8") as created:  # "x": never clobbers one made meanwhile
                created.write(text)
    except FileExistsError:
        raise LlmfailError(f"{target} already exists; not replacing it", hint="pass --force to replace it") from None
    except OSError as error:
        raise LlmfailError(f"cannot write {target}: {error.strerror or error}") from None
    return target


def _new_file_mode() -> int:
    """The mode `open()` gives a new file under this process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
