"""YAML to plain data, remembering where in the text every key and value came from.

PyYAML's `safe_load` forgets positions as soon as it builds Python objects, so a checker that
runs afterwards could only say *what* is wrong, never *where*. Here the node tree is composed
first (nodes carry start marks) and walked by hand, so every value gets an address: the path
of keys and indexes that leads to it (`("stages", "gated", "tiers", "medium")`) maps to the
line and column of its value, and of its key when it has one.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from releases.policy.errors import PolicyError, PolicyProblem

Path = tuple[str | int, ...]

# PyYAML follows YAML 1.1, where `1e15` is a *string* (a float needs a dot and a signed exponent:
# `1.0e+15`). Policy authors write parameter counts as 1e9 and 1e15; reading those as text would
# turn a ceiling into a type error at best. YAML 1.2's core schema reads them as numbers, and so
# does this loader.
_FLOAT_1_2 = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)$")


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_1_2, list("-+0123456789."))


@dataclass(frozen=True)
class Mark:
    line: int  # 1-based
    column: int  # 1-based


@dataclass
class MarkedDocument:
    """Plain data (dicts, lists, scalars) plus where each part of it was written."""

    source: str
    data: Any
    value_marks: dict[Path, Mark] = field(default_factory=dict)
    key_marks: dict[Path, Mark] = field(default_factory=dict)
    explicit_keys: dict[int, set[int]] = field(default_factory=dict, repr=False)

    def mark(self, path: Path, *, key: bool = False) -> Mark:
        """Where `path` was written: its key when asked for and present, else its value; a path
        that does not exist (a missing key) falls back to its nearest existing parent."""
        while True:
            if path in self.key_marks and (key or path not in self.value_marks
                                           or self.value_marks[path].line
                                           > self.key_marks[path].line):
                # A block mapping or list starts on the line after its key; the key's line is
                # where a reader looks for "this rule" or "this list".
                return self.key_marks[path]
            if path in self.value_marks:
                return self.value_marks[path]
            if not path:
                return Mark(1, 1)
            path = path[:-1]

    def problem(self, path: Path, message: str, *, key: bool = False) -> PolicyProblem:
        where = self.mark(path, key=key)
        return PolicyProblem(self.source, where.line, where.column, message)


def format_path(path: Path) -> str:
    """`("stages", "gated", "approvals", 0, "count")` -> `stages.gated.approvals[0].count`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "the policy"


def _mark(node: yaml.Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


def parse(text: str, *, source: str) -> MarkedDocument:
    """Compose `text` and convert it to plain data with marks. Syntax errors, unknown tags,
    duplicate keys and non-string keys are PolicyErrors located where they occur."""
    loader = _Loader(text)
    document = MarkedDocument(source=source, data=None)
    problems: list[PolicyProblem] = []
    try:
        node = loader.get_single_node()
        if node is None:
            raise PolicyError([PolicyProblem(source, 1, 1, "the policy is empty")])
        document.data = _convert(loader, node, (), document, problems)
    except yaml.MarkedYAMLError as exc:
        where = exc.problem_mark or exc.context_mark
        line, column = (where.line + 1, where.column + 1) if where else (1, 1)
        context = f" ({exc.context})" if exc.context else ""
        raise PolicyError([PolicyProblem(source, line, column,
                                         f"not valid YAML: {exc.problem or exc}{context}")]) \
            from None
    except yaml.YAMLError as exc:
        raise PolicyError([PolicyProblem(source, 1, 1, f"not valid YAML: {exc}")]) from None
    except _TooLarge as exc:
        raise PolicyError([PolicyProblem(source, exc.mark.line, exc.mark.column,
                                         exc.message)]) from None
    finally:
        loader.dispose()
    if problems:
        raise PolicyError(problems)
    return document


# A real policy has a few hundred values. Aliases can make a short text expand without bound
# (or refer to themselves); stop long before that hurts.
MAX_VALUES = 50_000


_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


class _TooLarge(Exception):
    def __init__(self, mark: Mark, message: str):
        self.mark, self.message = mark, message


def _convert(loader: _Loader, node: yaml.Node, path: Path, document: MarkedDocument,
             problems: list[PolicyProblem], active: frozenset[int] = frozenset()) -> Any:
    if id(node) in active:
        raise _TooLarge(_mark(node), f"{format_path(path)} refers to itself through an alias")
    if len(document.value_marks) >= MAX_VALUES:
        raise _TooLarge(_mark(node), f"the policy expands to more than {MAX_VALUES} values "
                                     "(through aliases?); a policy is far smaller")
    document.value_marks[path] = _mark(node)
    active = active | {id(node)}
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
        # Scalars go through SafeLoader's constructors, which refuse unknown tags; collections
        # are walked here, so refuse them here, rather than silently ignore a `!!python/...`.
        problems.append(PolicyProblem(document.source, *_position(node),
                                      f"{format_path(path)} has the tag {node.tag}; a policy "
                                      "uses plain YAML mappings, lists and values only"))
        return None
    if isinstance(node, yaml.MappingNode):
        # Merge keys (`<<: *defaults`) let authors share a rule between tiers; flatten them the
        # way PyYAML does, so the merged values keep the marks of where they were written. A key
        # written out next to a merge overrides the merged one; only a key written out twice is
        # a mistake.
        # flatten_mapping rewrites the node in place, so an aliased mapping seen a second time
        # is already flat: remember which keys were written out the first time.
        written_here = document.explicit_keys.setdefault(
            id(node), {id(key_node) for key_node, _ in node.value})
        loader.flatten_mapping(node)
        result: dict[str, Any] = {}
        explicit: set[str] = set()
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                problems.append(PolicyProblem(document.source, *_position(key_node),
                                              f"{format_path(path)} has a key {key!r} that is not "
                                              "a name; keys must be text"))
                continue
            child = path + (key,)
            is_explicit = id(key_node) in written_here
            if key in explicit and is_explicit:
                first = document.key_marks[child]
                problems.append(PolicyProblem(
                    document.source, *_position(key_node),
                    f"{format_path(child)} is given twice (first on line {first.line}); "
                    "YAML would silently keep only the last one"))
                continue
            if key in result:  # a later merge or an explicit key overrides a merged one
                _forget(document, child)
            if is_explicit:
                explicit.add(key)
            document.key_marks[child] = _mark(key_node)
            result[key] = _convert(loader, value_node, child, document, problems, active)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_convert(loader, item, path + (index,), document, problems, active)
                for index, item in enumerate(node.value)]
    value = loader.construct_object(node, deep=True)
    if isinstance(value, float) and not math.isfinite(value):
        problems.append(PolicyProblem(document.source, *_position(node),
                                      f"{format_path(path)} must be a finite number, not {value}"))
    return value


def _forget(document: MarkedDocument, path: Path) -> None:
    for marks in (document.value_marks, document.key_marks):
        for stale in [p for p in marks if p[:len(path)] == path]:
            del marks[stale]


def _position(node: yaml.Node) -> tuple[int, int]:
    mark = _mark(node)
    return mark.line, mark.column
