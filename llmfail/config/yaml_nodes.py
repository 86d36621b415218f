"""Reading YAML as located nodes and collecting every problem, for config and scenario files alike.

It reads PyYAML's node tree (`yaml.compose`) rather than `safe_load`'s plain
dicts, because only nodes remember where they came from: an operator mid-incident
needs "chains.yaml:14:7: chains.prod[1].timeout: ...", not "bad timeout somewhere".
A `NodeReader` records a problem and goes on, so one run reports everything that
is wrong (a fix-all round, not a fix-one-rerun loop); a value parser raises
`Invalid` to have its problem recorded at the node it was given.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection, Mapping
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..errors import ConfigError, ConfigProblem
from ..redact import redact
from .model import Location

#: How deep YAML may nest (block indentation plus flow brackets). A config needs about 7.
MAX_NESTING = 64

NULL_TAG = "tag:yaml.org,2002:null"
STR_TAG = "tag:yaml.org,2002:str"
MERGE_TAG = "tag:yaml.org,2002:merge"

Pair = tuple[Node, Node]  # (key node, value node)
Parser = Callable[["NodeReader", Node, str], Any]  # (reader, value node, dotted path) -> value, or raises Invalid


class Invalid(Exception):
    """Raised by a value parser; `message=None` means the parser already recorded its problems."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message)
        self.message = message


# ------------------------------------------------------------------------ text -> nodes


def decode(data: bytes, name: str) -> str:
    """UTF-8 text (a BOM is dropped), or a ConfigError located at the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line, column = _line_column(data[: error.start].decode("utf-8", "replace"))
        raise ConfigError([ConfigProblem(name, line, column, "", "the file is not UTF-8 text")]) from None


def _line_column(before: str) -> tuple[int, int]:
    """1-based position of the character that follows `before`."""
    return before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with a nesting limit.

    Its scanner does work proportional to the flow depth for every token, so
    `[[[[...` thousands deep costs seconds before the composer's recursion gives
    up; a config never needs more than a handful of levels.
    """

    def add_indent(self, column: int) -> bool:
        self._check_depth(len(self.indents))
        return super().add_indent(column)

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        self._check_depth(self.flow_level)
        super().fetch_flow_collection_start(TokenClass)

    def _check_depth(self, depth: int) -> None:
        if depth >= MAX_NESTING:
            raise yaml.scanner.ScannerError(
                problem=f"nested too deeply (more than {MAX_NESTING} levels)", problem_mark=self.get_mark()
            )


def compose(text: str, path: str) -> Node | None:
    """The YAML node tree (None for an empty document), or a ConfigError located at the syntax error."""
    loader: yaml.SafeLoader | None = None  # yaml.compose(), keeping the loader: its mark locates a RecursionError
    try:
        loader = _Loader(text)
        node: Node | None = loader.get_single_node()
        return node
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        context = f" ({error.context})" if error.context else ""
        message = f"invalid YAML: {error.problem}{context}"
    except yaml.YAMLError as error:  # ReaderError: a character YAML does not allow
        line, column = _line_column(text[: getattr(error, "position", 0)])
        message = f"invalid YAML: {getattr(error, 'reason', error)}"
    except RecursionError:  # the scanner stopped where the nesting got too deep
        mark = loader.get_mark() if loader is not None else None
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        message = "invalid YAML: nested too deeply"
    finally:
        if loader is not None:
            loader.dispose()
    raise ConfigError([ConfigProblem(path, line, column, "", message)])


# ------------------------------------------------------------------------ node reading


class NodeReader:
    """One pass over one file: reads nodes and collects problems instead of stopping at the first."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[ConfigProblem] = []
        self._constructor = yaml.constructor.SafeConstructor()

    def problem(self, node: Node | None, path: str, message: str) -> None:
        line, column = (node.start_mark.line + 1, node.start_mark.column + 1) if node is not None else (1, 1)
        self.problems.append(ConfigProblem(self.file, line, column, path, redact(message) or message))

    def sorted_problems(self) -> list[ConfigProblem]:
        """Every problem recorded, in file order."""
        return sorted(self.problems, key=lambda p: (p.line, p.column))

    def location(self, node: Node) -> Location:
        return Location(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def scalar(self, node: Node) -> Any:
        """The Python value of a scalar node (None for an empty value)."""
        if not isinstance(node, ScalarNode):
            raise Invalid(f"expected a single value, got {describe(node)}")
        try:
            return self._constructor.construct_object(node)
        except (yaml.YAMLError, ValueError) as error:
            raise Invalid(f"cannot read this value: {getattr(error, 'problem', None) or error}") from None

    def parse(self, node: Node, path: str, parser: Parser) -> tuple[bool, Any]:
        """(True, value), or (False, None) after recording why the value is bad."""
        try:
            return True, parser(self, node, path)
        except Invalid as error:
            if error.message:
                self.problem(node, path, error.message)
            return False, None

    def fields(self, pairs: Mapping[str, Pair], path: str, parsers: Mapping[str, Parser]) -> dict[str, Any]:
        """Every key of `pairs` that has a parser, parsed; bad values are recorded and left out."""
        values: dict[str, Any] = {}
        for key, (_, value_node) in pairs.items():
            if key in parsers:
                ok, value = self.parse(value_node, key_path(path, key), parsers[key])
                if ok:
                    values[key] = value
        return values

    def sequence(self, node: Node, path: str, what: str = "a list") -> list[Node] | None:
        if isinstance(node, SequenceNode):
            return list(node.value)
        self.problem(node, path, f"expected {what}, got {describe(node)}")
        return None

    def mapping(
        self, node: Node, path: str, allowed: Collection[str] | None = None, what: str = "a mapping"
    ) -> dict[str, Pair] | None:
        """The mapping's pairs by key (`<<` merges applied); reports duplicate and unknown keys."""
        if not isinstance(node, MappingNode):
            self.problem(node, path, f"expected {what}, got {describe(node)}")
            return None
        pairs: dict[str, Pair] = {}
        merged: dict[str, Pair] = {}
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:
                if not _mergeable(value_node):
                    self.problem(value_node, key_path(path, "<<"), "'<<' merges a mapping or a list of mappings")
                for key, pair in _merged_pairs(value_node, set()).items():
                    merged.setdefault(key, pair)
            elif self._check_key(key_node, path, pairs, allowed):
                pairs[key_node.value] = (key_node, value_node)
        for key, pair in merged.items():
            if key not in pairs and self._check_key(pair[0], path, {}, allowed):
                pairs[key] = pair
        return pairs

    def _check_key(self, key_node: Node, path: str, seen: Mapping[str, Pair], allowed: Collection[str] | None) -> bool:
        if not isinstance(key_node, ScalarNode) or key_node.tag == NULL_TAG:
            self.problem(key_node, path, f"expected a plain name as key, got {describe(key_node)}")
            return False
        key = key_node.value
        if key in seen:
            first = seen[key][0].start_mark.line + 1
            self.problem(key_node, key_path(path, key), f"duplicate key {key!r} (first given on line {first})")
            return False
        if allowed is not None and key not in allowed:
            self.problem(key_node, key_path(path, key), f"unknown key {key!r}{suggest(key, allowed)}")
            return False
        return True


def _mergeable(node: Node) -> bool:
    if isinstance(node, SequenceNode):
        return all(isinstance(item, MappingNode) for item in node.value)
    return isinstance(node, MappingNode)


def _merged_pairs(node: Node, seen: set[int]) -> dict[str, Pair]:
    """Pairs a YAML `<<:` merge brings in (earlier sources win, as YAML specifies)."""
    if id(node) in seen:
        return {}
    seen.add(id(node))
    sources = node.value if isinstance(node, SequenceNode) else [node]
    pairs: dict[str, Pair] = {}
    for source in sources:
        for key_node, value_node in source.value if isinstance(source, MappingNode) else ():
            if key_node.tag == MERGE_TAG:
                for key, pair in _merged_pairs(value_node, seen).items():
                    pairs.setdefault(key, pair)
            elif isinstance(key_node, ScalarNode):
                pairs.setdefault(key_node.value, (key_node, value_node))
    return pairs


def is_null(node: Node | None) -> bool:
    """An empty value (`key:` with nothing after it, or `null`)."""
    return isinstance(node, ScalarNode) and node.tag == NULL_TAG


# ------------------------------------------------------------------------- messages


def key_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def index_path(path: str, index: int) -> str:
    return f"{path}[{index}]"


def did_you_mean(word: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def suggest(word: str, choices: Collection[str]) -> str:
    """'; did you mean X?' when something is close, else the list of what is allowed."""
    listing = f"; expected one of: {', '.join(sorted(choices))}" if choices else ""
    return did_you_mean(word, choices) or listing


def describe(node: Node) -> str:
    """How a value reads in an error message."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    kinds = {
        NULL_TAG: "an empty value",
        "tag:yaml.org,2002:bool": f"the boolean {node.value}",
        "tag:yaml.org,2002:int": f"the number {node.value}",
        "tag:yaml.org,2002:float": f"the number {node.value}",
    }
    return kinds.get(node.tag, f"{node.value!r}")
