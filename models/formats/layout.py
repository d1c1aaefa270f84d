"""What each file in a checkpoint is, and the rules every checkpoint path obeys."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from models.formats import FormatError

MAX_PATH_LENGTH = 512

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib", ".npy", ".npz")

TOKENIZER_FILES = {
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
    "vocab.txt", "merges.txt", "tokenizer.model", "added_tokens.json", "spiece.model",
    "sentencepiece.bpe.model", "chat_template.jinja", "chat_template.json",
}


# Any one of these sets of files is a tokenizer transformers can load without a hub.
TOKENIZER_FILE_SETS = (("tokenizer.json",), ("vocab.json", "merges.txt"), ("tokenizer.model",),
                       ("spiece.model",), ("sentencepiece.bpe.model",), ("vocab.txt",))


def missing_tokenizer(paths) -> str | None:
    """None when the top level of a model folder holds a tokenizer; else the sentence that
    names the files and how to add them (the language-model evals fail with it)."""
    present = {path for path in paths if "/" not in path}
    if any(all(name in present for name in names) for names in TOKENIZER_FILE_SETS):
        return None
    wanted = ", ".join(" with ".join(names) for names in TOKENIZER_FILE_SETS)
    return (f"the checkpoint has no tokenizer: none of {wanted} is among its files; save it "
            "beside the weights with tokenizer.save_pretrained(folder) and submit the folder as "
            "a new checkpoint")


class FileKind:
    SAFETENSORS = "safetensors"
    SAFETENSORS_INDEX = "safetensors_index"
    PICKLE = "pickle"                # PyTorch and other pickle-based weights: scanned, never loaded
    PICKLE_INDEX = "pickle_index"
    CONFIG = "config"
    GENERATION_CONFIG = "generation_config"
    TOKENIZER = "tokenizer"
    MODEL_CARD = "model_card"
    OTHER = "other"

    WEIGHTS = (SAFETENSORS, PICKLE)
    CHOICES = [(k, k.replace("_", " ")) for k in (
        SAFETENSORS, SAFETENSORS_INDEX, PICKLE, PICKLE_INDEX, CONFIG, GENERATION_CONFIG,
        TOKENIZER, MODEL_CARD, OTHER)]


def classify(path: str) -> str:
    name = PurePosixPath(path).name
    lower = name.lower()
    if lower.endswith(".safetensors"):
        return FileKind.SAFETENSORS
    if lower.endswith(".safetensors.index.json"):
        return FileKind.SAFETENSORS_INDEX
    if lower.endswith((".bin.index.json", ".pt.index.json", ".pth.index.json")):
        return FileKind.PICKLE_INDEX
    if lower.endswith(PICKLE_SUFFIXES):
        return FileKind.PICKLE
    if name == "config.json":
        return FileKind.CONFIG
    if name == "generation_config.json":
        return FileKind.GENERATION_CONFIG
    if name in TOKENIZER_FILES:
        return FileKind.TOKENIZER
    if lower == "readme.md":
        return FileKind.MODEL_CARD
    return FileKind.OTHER


# Leading bytes of formats that can carry a pickle whatever the file is called: pickle protocol
# 2-5, zip (torch.save's format, .npz), numpy's .npy, and tar (legacy torch.save).
_PICKLE_CARRIER_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05", b"PK\x03\x04",
                         b"\x93NUMPY")


def sniff_pickle_carrier(head: bytes) -> bool:
    """True when a file's first 512 bytes look like a pickle or a container of one."""
    return head.startswith(_PICKLE_CARRIER_MAGIC) or head[257:262] == b"ustar"


_SEGMENT = re.compile(r"^[^\x00-\x1f\x7f/\\]+$")


def normalize_path(raw: str) -> str:
    """A checkpoint-relative POSIX path, or FormatError saying why `raw` is not one.

    Absolute paths, `..`, backslashes, empty segments and control characters are refused rather
    than repaired: a path that needed repairing was either a mistake or an attack.
    """
    if not isinstance(raw, str) or raw == "":
        raise FormatError("empty file name")
    shown = raw if len(raw) <= 80 else raw[:77] + "..."
    if len(raw) > MAX_PATH_LENGTH:
        raise FormatError(f"file name {shown!r} is longer than {MAX_PATH_LENGTH} characters")
    if "\\" in raw:
        raise FormatError(f"file name {shown!r} contains a backslash; use / between folders")
    if raw.startswith("/") or re.match(r"^[A-Za-z]:", raw):
        raise FormatError(f"file name {shown!r} is an absolute path; use a path relative "
                          "to the checkpoint folder")
    segments = raw.split("/")
    for segment in segments:
        if segment in ("", "."):
            raise FormatError(f"file name {shown!r} has an empty or '.' folder segment")
        if segment == "..":
            raise FormatError(f"file name {shown!r} climbs out of the checkpoint folder with '..'")
        if not _SEGMENT.match(segment):
            raise FormatError(f"file name {shown!r} contains control characters")
    return "/".join(segments)


def check_unique(paths: list[str]) -> None:
    seen: dict[str, str] = {}
    for path in paths:
        key = path.casefold()
        if key in seen:
            if seen[key] == path:
                raise FormatError(f"duplicate file {path!r}: each path may appear once")
            raise FormatError(f"files {seen[key]!r} and {path!r} differ only by case; "
                              "they would collide on case-insensitive file systems")
        seen[key] = path
    for path in paths:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth]).casefold()
            if folder in seen:
                raise FormatError(f"{seen[folder]!r} is a file but {path!r} uses it as a folder")
