"""Config fuzzing (issue 8, item 10): any file gives a Config or a located ConfigError, fast.

Thousands of damaged copies of chains.example.yaml (a seeded RNG deletes,
duplicates, swaps and re-indents lines, drops in junk characters, tabs and
wrong-typed values, mistypes keys, cuts the file short) go through
`parse_config` in-process; a handful of the rejected ones and the hostile
classics (alias bombs, a 10 MB file, deep nesting, duplicate keys, tabs, wrong
types) also go through the real CLI, which must exit 2 with located problems
and no traceback.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from random import Random

import pytest

from llmfail.config import Config, parse_config
from llmfail.errors import ConfigError

BASE = (Path(__file__).resolve().parents[1] / "chains.example.yaml").read_text(encoding="utf-8")

#: Values of the wrong type, or junk, put where a value was.
JUNK_VALUES = [
    "[1, 2]",
    "{a: 1}",
    "-5s",
    "0",
    "-1",
    "nan",
    ".inf",
    "1e999",
    "true",
    "null",
    "~",
    "''",
    '"\\x00"',
    "9" * 40,
    "3 apples",
    "!!binary aGk=",
    "!!python/object:os.system ls",
    "*nowhere",
    "&anchor",
    "|\n    multi",
    ">-",
    "@x",
    "`x`",
    "%TAG",
    "2h30m",
    "1d",
    "250ms",
    "${UNSET_VAR}",
    "${OK:-x",
    "\t",
]
#: Characters dropped in at random places.
JUNK_CHARS = list(":-[]{}&*!|>%@`\t\"'#,?\\\x00\x07\x1b\ufeff\u2028\u00e9\U0001f600\r") + ["\n", "  ", "<<: "]
#: Keys that exist somewhere in the file, to mistype or duplicate.
KEYS = [
    "attempts",
    "backoff",
    "cooldown",
    "timeout",
    "deadline",
    "providers",
    "chains",
    "model",
    "chain",
    "credentials",
    "api_key_env",
    "base_url",
    "type",
    "fail",
    "daily_quota",
    "defaults",
    "headers",
]


def _line_mutation(lines: list[str], rng: Random) -> list[str]:
    at = rng.randrange(len(lines))
    choice = rng.randrange(6)
    if choice == 0:  # delete a line
        return lines[:at] + lines[at + 1 :]
    if choice == 1:  # duplicate a line: duplicate keys, doubled entries
        return lines[: at + 1] + [lines[at]] + lines[at + 1 :]
    if choice == 2:  # swap two lines
        other = rng.randrange(len(lines))
        lines = list(lines)
        lines[at], lines[other] = lines[other], lines[at]
        return lines
    if choice == 3:  # re-indent a line, with spaces or a tab
        stripped = lines[at].lstrip(" ")
        indent = rng.choice(["", " ", "   ", "      ", "\t", " \t", "        "])
        return lines[:at] + [indent + stripped] + lines[at + 1 :]
    if choice == 4:  # cut the file short
        return lines[:at]
    key = rng.choice(KEYS)  # a key line in the wrong place
    return lines[:at] + [" " * rng.choice([0, 2, 4, 6]) + f"{key}: {rng.choice(JUNK_VALUES)}"] + lines[at:]


def _value_mutation(text: str, rng: Random) -> str:
    spots = [i for i, ch in enumerate(text) if ch == ":" and text[i + 1 : i + 2] == " "]
    choice = rng.randrange(4)
    if choice == 0 and spots:  # a value of the wrong type or junk after some key
        at = rng.choice(spots) + 2
        end = text.find("\n", at)
        return text[:at] + rng.choice(JUNK_VALUES) + text[end if end != -1 else len(text) :]
    if choice == 1:  # a random character somewhere
        at = rng.randrange(len(text) + 1)
        return text[:at] + rng.choice(JUNK_CHARS) + text[at:]
    if choice == 2:  # a mistyped key
        key = rng.choice(KEYS)
        if key + ":" in text:
            typo = list(key)
            i = rng.randrange(len(typo))
            typo[i] = rng.choice("abcdefghijklmnopqrstuvwxyz_")
            return text.replace(key + ":", "".join(typo) + ":", 1)
        return text
    at = rng.randrange(len(text) + 1)  # delete a run of characters
    return text[:at] + text[at + rng.randrange(1, 20) :]


def mutate(text: str, rng: Random) -> str:
    """One to three random damages of `text`: deterministic for a seeded `rng`."""
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.5:
            text = "\n".join(_line_mutation(text.split("\n"), rng))
        else:
            text = _value_mutation(text, rng)
        if not text:
            text = rng.choice(JUNK_VALUES)
    return text


#: Problems about the whole document rather than one key: YAML syntax, an empty file, a top level
#: that is not a mapping, a file too large to read. Every other problem names its key path.
DOCUMENT_LEVEL = ("invalid YAML", "the file is empty", "expected a mapping with", "the config file is larger")


def check_rejection(error: ConfigError, name: str) -> None:
    """Every problem names the file, a line and column, and (unless it is about the whole file) a key path."""
    assert error.problems
    for problem in error.problems:
        assert problem.file == name and problem.line >= 1 and problem.column >= 1, str(problem)
        assert problem.path or problem.message.startswith(DOCUMENT_LEVEL), str(problem)
        assert f"{name}:{problem.line}:{problem.column}:" in str(problem)


def parse_timed(text: str, name: str) -> tuple[float, Config | ConfigError]:
    started = time.perf_counter()
    try:
        outcome: Config | ConfigError = parse_config(text, name)
    except ConfigError as error:
        outcome = error
    return time.perf_counter() - started, outcome


@pytest.mark.parametrize(
    "files", [pytest.param(600, id="600-files"), pytest.param(5000, id="5000-files", marks=pytest.mark.slow)]
)
def test_every_damaged_copy_of_the_example_is_a_config_or_a_located_config_error_in_under_a_second(files: int) -> None:
    rng = Random(10)
    outcomes: Counter[str] = Counter()
    slowest = 0.0
    for number in range(files):
        name = f"fuzz-{number}.yaml"
        elapsed, outcome = parse_timed(mutate(BASE, rng), name)  # anything else raised fails the test right here
        slowest = max(slowest, elapsed)
        if isinstance(outcome, ConfigError):
            check_rejection(outcome, name)
        outcomes[type(outcome).__name__] += 1
    assert slowest < 1.0
    assert outcomes["ConfigError"] > files // 2 and outcomes["Config"] > 0  # the mutations bite, and not always
    print(
        f"\n{files} mutated files: {outcomes['ConfigError']} rejected with located problems, "
        f"{outcomes['Config']} still valid, 0 tracebacks, slowest {slowest * 1000:.0f} ms"
    )


def alias_bomb(depth: int = 9, width: int = 9) -> str:
    """Billion laughs: each anchor is a list of `width` aliases of the previous one."""
    lines = ["x-lol: &l0 [" + ", ".join(['"lol"'] * width) + "]"]
    lines += [f"x-l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]" for i in range(1, depth)]
    return "\n".join(lines) + f"\nchains:\n  main: *l{depth - 1}\n"


def nested_chain_bomb(depth: int = 9, width: int = 9) -> str:
    """Billion laughs without aliases: each chain nests the previous one `width` times."""
    lines = ["chains:", "  c0: [" + ", ".join(["mock/lol"] * width) + "]"]
    lines += [f"  c{i}: [" + ", ".join([f"{{chain: c{i - 1}}}"] * width) + "]" for i in range(1, depth)]
    return "\n".join(lines) + "\n"


def merge_bomb(depth: int = 30) -> str:
    """`<<:` merges of `<<:` merges, each twice."""
    lines = ["defaults: &d0 {attempts: 1}"]
    lines += [f"x{i}: &d{i}\n  <<: [*d{i - 1}, *d{i - 1}]" for i in range(1, depth)]
    return "\n".join(lines) + "\nchains: {main: [mock/a]}\n"


HOSTILE = {
    "alias-bomb": alias_bomb(),
    "nested-chain-bomb": nested_chain_bomb(),
    "merge-bomb": merge_bomb(),
    "deep-flow-nesting": "chains: " + "[" * 5000 + "]" * 5000 + "\n",
    "deep-mapping-nesting": "chains: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n",
    "ten-megabytes": BASE + "\n# " + ("x" * 99 + "\n# ") * 100_000,
    "ten-megabytes-of-entries": BASE.replace("  demo:", "  huge: [" + ", ".join(["mock/m"] * 1_100_000) + "]\n  demo:"),
    "duplicate-keys": BASE.replace("  cooldown: 30s", "  cooldown: 30s\n  cooldown: 1m").replace(
        "  demo:", "  cheap: [mock/a]\n  demo:"
    ),
    "duplicate-top-level": BASE + "\nchains:\n  other: [mock/a]\n",
    "tab-indentation": BASE.replace("\n  attempts: 3", "\n\tattempts: 3"),
    "tab-after-value": BASE.replace("cooldown: 30s", "cooldown:\t30s\t\t"),
    "wrong-types": BASE.replace("attempts: 3 ", "attempts: three ")
    .replace("cooldown: 30s", "cooldown: [30s]")
    .replace("type: mock", "type: {mock: 1}")
    .replace("daily_quota: 5000", "daily_quota: -5"),
    "not-a-mapping": "- just\n- a list\n",
    "nul-byte": BASE.replace("demo:", "de\x00mo:"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_config_is_refused_or_bounded_fast_with_every_problem_located(name: str) -> None:
    elapsed, outcome = parse_timed(HOSTILE[name], f"{name}.yaml")
    assert isinstance(outcome, ConfigError), f"{name} was accepted"
    check_rejection(outcome, f"{name}.yaml")
    assert elapsed < 1.0, f"{name} took {elapsed:.2f}s"


def test_a_duplicate_key_names_both_lines_and_its_key_path() -> None:
    _, outcome = parse_timed(HOSTILE["duplicate-keys"], "dup.yaml")
    assert isinstance(outcome, ConfigError)
    messages = [str(p) for p in outcome.problems]
    assert any(": defaults.cooldown: duplicate key 'cooldown' (first given on line" in m for m in messages), messages
    assert any(": chains.cheap: duplicate key 'cheap'" in m for m in messages), messages


def test_nested_chains_that_multiply_are_refused_at_the_item_that_overflows() -> None:
    _, outcome = parse_timed(nested_chain_bomb(), "bomb.yaml")
    assert isinstance(outcome, ConfigError)
    assert all(p.path.startswith("chains.c") for p in outcome.problems), outcome.problems
    overflows = [p for p in outcome.problems if "flattens to more than" in p.message]
    assert overflows and overflows[0].path == "chains.c3[1].chain", overflows  # 9**4 > 1000


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmfail.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=60
    )


def test_rejected_files_exit_2_through_the_real_cli_with_located_problems_and_no_traceback(tmp_path: Path) -> None:
    rng = Random(11)
    files: dict[str, str] = {}
    while len(files) < 5:  # five mutated files the loader rejects, plus the hostile classics
        text = mutate(BASE, rng)
        if isinstance(parse_timed(text, "x")[1], ConfigError):
            files[f"mutated-{len(files)}.yaml"] = text
    files.update(
        {
            f"{name}.yaml": HOSTILE[name]
            for name in (
                "alias-bomb",
                "nested-chain-bomb",
                "ten-megabytes",
                "duplicate-keys",
                "tab-indentation",
                "wrong-types",
                "deep-flow-nesting",
            )
        }
    )
    for number, (name, text) in enumerate(files.items()):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        commands = [["check", str(path)], ["--config", str(path), "run", "hi", "--chain", "demo"]]
        for args in commands[: 2 if number % 4 == 0 else 1]:  # `check` for all, `run` for every fourth
            started = time.monotonic()
            proc = run_cli(*args, cwd=tmp_path)
            assert proc.returncode == 2, (name, args, proc.stderr[-2000:])
            assert "Traceback" not in proc.stderr + proc.stdout, (name, proc.stderr[-2000:])
            assert f"{path}:" in proc.stderr or f"{name}:" in proc.stderr, (name, proc.stderr[-2000:])
            assert time.monotonic() - started < 10
