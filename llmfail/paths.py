"""Where llmfail looks for its config and keeps its state (the discovery order in docs/concepts.md)."""

from __future__ import annotations

import os
from pathlib import Path

APP = "llmfail"


def config_candidates(explicit: str | None = None) -> list[Path]:
    """Config files in the order they are tried: --config, $LLMFAIL_CONFIG, ./chains.yaml, user dir."""
    if explicit:
        return [Path(explicit)]
    env = os.environ.get("LLMFAIL_CONFIG")
    if env:
        return [Path(env)]
    from platformdirs import user_config_dir

    return [Path("chains.yaml"), Path(user_config_dir(APP)) / "chains.yaml"]


def find_config(explicit: str | None = None) -> Path | None:
    """The first existing candidate; an explicit path is returned even if missing (to be reported)."""
    return config_source(explicit)[0]


def config_source(explicit: str | None = None) -> tuple[Path | None, str]:
    """The config file discovery picks and how it was found (for `llmfail info`):
    `--config`, `$LLMFAIL_CONFIG`, `./chains.yaml`, `user config dir`, or None and `none found`."""
    candidates = config_candidates(explicit)
    if explicit:
        return candidates[0], "--config"
    if os.environ.get("LLMFAIL_CONFIG"):
        return candidates[0], "$LLMFAIL_CONFIG"
    for path, how in zip(candidates, ("./chains.yaml", "user config dir"), strict=True):
        if path.is_file():
            return path, how
    return None, "none found"


def default_state_db() -> Path:
    """state.db in the user state dir: the store when nothing else names one."""
    from platformdirs import user_state_dir

    return Path(user_state_dir(APP)) / "state.db"
