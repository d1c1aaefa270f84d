"""Evaluation packs: a short YAML header between `---` lines, then one JSON object per line.

    ---
    name: mc-facts-en
    version: 1
    type: multiple_choice
    description: Everyday facts and common misconceptions.
    licence: CC-BY-4.0
    ---
    {"id": "q1", "question": "...", "choices": ["...", "..."], "answer": 0}

Validation collects every problem, each naming the file line and the field, so a lab can fix
a pack in one pass. A pack's identity is the sha256 of its bytes: a changed byte is a
different pack, whatever its header says.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

BUILTIN_PACK_DIR = Path(__file__).resolve().parent.parent / "packs"
MAX_PACK_BYTES = 20 * 1024 * 1024
MAX_ERRORS = 50
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
# Types a lab may upload; the other types feed built-in evals from shipped packs.
CUSTOM_PACK_TYPES = ("multiple_choice", "scored_text", "prompt_pairs")
PACK_TYPES = CUSTOM_PACK_TYPES + ("bias_pairs", "extraction_prefixes")
HEADER_FIELDS = {"name", "version", "type", "description", "licence", "prompt_template",
                 "target_delimiter", "refusal", "compliance", "source"}


class PackValidationError(ValueError):
    def __init__(self, errors: list[str]):
        self.errors = errors
        shown = errors[:MAX_ERRORS]
        more = f"\n... and {len(errors) - MAX_ERRORS} more" if len(errors) > MAX_ERRORS else ""
        super().__init__("\n".join(shown) + more)


@dataclass(frozen=True)
class Pack:
    name: str
    version: int
    type: str
    description: str
    licence: str
    header: dict
    items: tuple[dict, ...]
    sha256: str
    source: str = field(default="", compare=False)

    @property
    def ref(self) -> dict:
        """What a result records about the pack it read."""
        return {"name": self.name, "version": self.version, "type": self.type, "sha256": self.sha256}

    def option(self, key: str, default: Any = None) -> Any:
        return self.header.get(key, default)


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _check_text(item: dict, key: str, problems: list[str], *, required: bool = True) -> None:
    if key not in item:
        if required:
            problems.append(f"field `{key}` is required")
    elif not _is_text(item[key]):
        problems.append(f"field `{key}` must be a non-empty string")


def _check_multiple_choice(item: dict, header: dict) -> list[str]:
    problems: list[str] = []
    _check_text(item, "question", problems)
    choices = item.get("choices")
    if not (isinstance(choices, list) and len(choices) >= 2 and all(_is_text(c) for c in choices)):
        problems.append("field `choices` must be a list of at least 2 strings")
        return problems
    if len(set(choices)) != len(choices):
        problems.append("field `choices` must not repeat a choice")
    has_answer, has_labels = "answer" in item, "labels" in item
    if has_answer == has_labels:
        problems.append("exactly one of `answer` (index of the correct choice) or `labels` "
                        "(0/1 per choice) is required")
    elif has_answer:
        answer = item["answer"]
        if not (isinstance(answer, int) and not isinstance(answer, bool)
                and 0 <= answer < len(choices)):
            problems.append(f"field `answer` must be an integer from 0 to {len(choices) - 1}")
    else:
        labels = item["labels"]
        if not (isinstance(labels, list) and len(labels) == len(choices)
                and all(label in (0, 1) and not isinstance(label, bool) for label in labels)):
            problems.append("field `labels` must be a list of 0/1, one per choice")
        elif 1 not in labels or 0 not in labels:
            problems.append("field `labels` must mark at least one true and one false choice")
    return problems


def _check_scored_text(item: dict, header: dict) -> list[str]:
    problems: list[str] = []
    _check_text(item, "text", problems)
    return problems


def _check_prompt_pairs(item: dict, header: dict) -> list[str]:
    problems: list[str] = []
    _check_text(item, "prompt", problems)
    _check_text(item, "twin", problems)
    for key in ("refusal", "compliance"):
        _check_text(item, key, problems, required=not _is_text(header.get(key)))
    return problems


def _check_bias_pairs(item: dict, header: dict) -> list[str]:
    problems: list[str] = []
    _check_text(item, "template", problems)
    _check_text(item, "more", problems)
    _check_text(item, "less", problems)
    template = item.get("template")
    if _is_text(template):
        if template.count("{}") != 1:
            problems.append("field `template` must contain `{}` exactly once")
        elif template.split("{}", 1)[1].strip() == "":
            problems.append("field `template` needs text after `{}` (the shared continuation)")
    if _is_text(item.get("more")) and item.get("more") == item.get("less"):
        problems.append("fields `more` and `less` must differ")
    if "bias_type" in item and not _is_text(item["bias_type"]):
        problems.append("field `bias_type` must be a non-empty string")
    return problems


def _check_extraction_prefixes(item: dict, header: dict) -> list[str]:
    problems: list[str] = []
    _check_text(item, "prefix", problems)
    _check_text(item, "continuation", problems)
    return problems


CHECKS: dict[str, Callable[[dict, dict], list[str]]] = {
    "multiple_choice": _check_multiple_choice,
    "scored_text": _check_scored_text,
    "prompt_pairs": _check_prompt_pairs,
    "bias_pairs": _check_bias_pairs,
    "extraction_prefixes": _check_extraction_prefixes,
}
TEMPLATE_FIELDS = {"multiple_choice": "{question}", "prompt_pairs": "{prompt}"}


def _split_header(lines: list[str]) -> tuple[int, list[str]]:
    """(index of the closing `---` line, problems)."""
    if not lines or lines[0].strip() != "---":
        return -1, ["line 1: a pack starts with a `---` line, then its YAML header"]
    for index in range(1, len(lines)):
        if lines[index].strip() == "---":
            return index, []
    return -1, ["line 1: the YAML header is not closed by a second `---` line"]


def _header_line(lines: list[str], end: int, key: str) -> int:
    """The file line where a header key is set (or the line that closes the header)."""
    for index in range(1, end):
        if re.match(rf"^{re.escape(str(key))}\s*:", lines[index]):
            return index + 1
    return end + 1


def _check_header(header: Any, lines: list[str], end: int, errors: list[str]) -> dict:
    if not isinstance(header, dict):
        errors.append("line 2: the header must be a YAML mapping (key: value lines)")
        return {}

    def at(key: str) -> str:
        return f"line {_header_line(lines, end, key)}"

    for key in sorted(set(header) - HEADER_FIELDS, key=str):
        errors.append(f"{at(key)}: unknown header field `{key}`")
    name = header.get("name")
    if not (isinstance(name, str) and NAME_PATTERN.match(name)):
        errors.append(f"{at('name')}: field `name` must be lower-case letters, digits, `-`, `_` or "
                      "`.` (at most 64)")
    version = header.get("version")
    if not (isinstance(version, int) and not isinstance(version, bool) and version >= 1):
        errors.append(f"{at('version')}: field `version` must be a positive integer")
    pack_type = header.get("type")
    if pack_type not in PACK_TYPES:
        errors.append(f"{at('type')}: field `type` must be one of {', '.join(PACK_TYPES)}")
    for key in ("description", "licence"):
        if not _is_text(header.get(key)):
            errors.append(f"{at(key)}: field `{key}` must be a non-empty string")
    template = header.get("prompt_template")
    if template is not None:
        needed = TEMPLATE_FIELDS.get(pack_type)
        if not (isinstance(template, str) and needed and needed in template):
            errors.append(f"{at('prompt_template')}: field `prompt_template` must be a string containing "
                          f"{needed or 'a placeholder'}")
    for key in ("target_delimiter", "refusal", "compliance", "source"):
        if key in header and not isinstance(header[key], str):
            errors.append(f"{at(key)}: field `{key}` must be a string")
    return header


def load_pack(source: Path | str | bytes, *, allowed_types: tuple[str, ...] = PACK_TYPES) -> Pack:
    """Parse and validate a pack from a path or its bytes; raise PackValidationError listing
    every problem by line number and field."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        data, label = path.read_bytes(), path.name
    else:
        data, label = bytes(source), ""
    if len(data) > MAX_PACK_BYTES:
        raise PackValidationError([f"the pack is {len(data)} bytes; the limit is {MAX_PACK_BYTES}"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise PackValidationError([f"line {line}: not valid UTF-8"]) from None
    lines = text.split("\n")
    end, errors = _split_header(lines)
    if errors:
        raise PackValidationError(errors)
    try:
        raw_header = yaml.safe_load("\n".join(lines[1:end])) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 2
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise PackValidationError([f"line {line}: header is not valid YAML ({problem})"]) from None
    header = _check_header(raw_header, lines, end, errors)
    if header.get("type") in PACK_TYPES and header["type"] not in allowed_types:
        errors.append(f"line {_header_line(lines, end, 'type')}: field `type` must be one of "
                      f"{', '.join(allowed_types)} here")
    check = CHECKS.get(header.get("type", ""))
    items: list[dict] = []
    seen_ids: dict[str, int] = {}
    for index in range(end + 1, len(lines)):
        line_no, raw = index + 1, lines[index]
        if raw.strip() == "":
            continue
        try:
            item = json.loads(raw)
        except json.JSONDecodeError as error:
            errors.append(f"line {line_no}: not valid JSON ({error.msg} at column {error.colno})")
            continue
        if not isinstance(item, dict):
            errors.append(f"line {line_no}: each item must be a JSON object")
            continue
        item_id = item.get("id", str(len(items) + 1))
        if not _is_text(item_id):
            errors.append(f"line {line_no}: field `id` must be a non-empty string")
        elif item_id in seen_ids:
            errors.append(f"line {line_no}: field `id` repeats `{item_id}` from line "
                          f"{seen_ids[item_id]}")
        else:
            seen_ids[item_id] = line_no
        for problem in (check(item, header) if check else []):
            errors.append(f"line {line_no}: {problem}")
        items.append({**item, "id": item_id})
    if not items and check:
        errors.append(f"line {end + 2}: the pack has no items")
    if errors:
        raise PackValidationError(errors)
    return Pack(name=header["name"], version=header["version"], type=header["type"],
                description=header["description"].strip(), licence=header["licence"].strip(),
                header=dict(header), items=tuple(items), sha256=hashlib.sha256(data).hexdigest(),
                source=label)


def builtin_pack_paths() -> dict[str, Path]:
    """Shipped packs by name; files are named `<name>.v<version>.jsonl`, newest version wins."""
    found: dict[str, tuple[int, Path]] = {}
    for path in sorted(BUILTIN_PACK_DIR.glob("*.v*.jsonl")):
        name, _, version = path.name.removesuffix(".jsonl").rpartition(".v")
        if version.isdigit() and (name not in found or int(version) > found[name][0]):
            found[name] = (int(version), path)
    return {name: path for name, (_, path) in found.items()}


def load_builtin_pack(name: str) -> Pack:
    paths = builtin_pack_paths()
    if name not in paths:
        raise KeyError(f"no built-in pack named {name!r}; known: {', '.join(sorted(paths))}")
    pack = load_pack(paths[name])
    if pack.name != name:
        raise PackValidationError([f"line 2: field `name` is {pack.name!r} but the file is named "
                                   f"{name!r}"])
    return pack
