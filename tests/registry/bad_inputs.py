"""Every bad submission the registry must refuse, with the words its error must contain.

Each case is a list of (checkpoint path, bytes). The same catalogue runs through the REST API,
the web form and the command line, and each run proves that nothing was left behind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from tests.checkpoints import raw_safetensors, tensors

CONFIG = json.dumps({"architectures": ["X"], "model_type": "x"}).encode()


def _valid_bytes() -> bytes:
    from safetensors.torch import save

    return save(tensors())


def _f32(n: int) -> bytes:
    return b"\0" * (4 * n)


@dataclass
class BadInput:
    id: str
    files: list[tuple[str, bytes]]
    message: str
    status: int = 400
    # False where a folder on disk cannot express the case (e.g. a path with "..").
    cli: bool = True
    family: str = "lab/tiny"
    label: str = "v1"
    settings: dict = field(default_factory=dict)


def catalogue() -> list[BadInput]:
    valid = _valid_bytes()
    return [
        BadInput("header-length-past-eof",
                 [("model.safetensors", raw_safetensors({}, declared_length=10_000))],
                 "runs past the end of the file"),
        BadInput("header-not-json",
                 [("model.safetensors", raw_safetensors(b"{this is not json}"))],
                 "header is not valid JSON"),
        BadInput("header-json-not-object",
                 [("model.safetensors", raw_safetensors(b"[1, 2, 3]"))],
                 "not an object"),
        BadInput("unknown-dtype",
                 [("model.safetensors", raw_safetensors(
                     {"w": {"dtype": "F7", "shape": [1], "data_offsets": [0, 4]}}, _f32(1)))],
                 "unknown dtype 'F7'"),
        BadInput("overlapping-offsets",
                 [("model.safetensors", raw_safetensors(
                     {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                      "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, _f32(3)))],
                 "overlap"),
        BadInput("offsets-out-of-range",
                 [("model.safetensors", raw_safetensors(
                     {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, _f32(2)))],
                 "out of range"),
        BadInput("shape-disagrees-with-byte-range",
                 [("model.safetensors", raw_safetensors(
                     {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, _f32(2)))],
                 "needs 12 bytes but its data_offsets span 8"),
        BadInput("gap-between-tensors",
                 [("model.safetensors", raw_safetensors(
                     {"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, _f32(2)))],
                 "must be contiguous"),
        BadInput("truncated-file", [("model.safetensors", valid[:-10])], "out of range"),
        BadInput("zero-byte-weights", [("model.safetensors", b""), ("config.json", CONFIG)],
                 "too short for a safetensors header"),
        BadInput("empty-upload", [], "empty upload"),
        BadInput("all-files-empty", [("model.safetensors", b"")], "empty upload"),
        BadInput("path-traversal", [("../escape.safetensors", valid)], "climbs out", cli=False),
        BadInput("path-traversal-inside", [("sub/../../escape.safetensors", valid)], "climbs out",
                 cli=False),
        BadInput("absolute-path", [("/etc/model.safetensors", valid)], "absolute path", cli=False),
        BadInput("duplicate-paths", [("model.safetensors", valid), ("model.safetensors", valid)],
                 "duplicate file", cli=False),
        BadInput("case-variant-paths", [("model.safetensors", valid), ("Model.safetensors", valid)],
                 "differ only by case"),
        BadInput("family-not-org-name", [("model.safetensors", valid)], "not of the form org/name",
                 family="just-a-name"),
        BadInput("family-with-traversal", [("model.safetensors", valid)], "not of the form org/name",
                 family="../etc"),
        BadInput("bad-label", [("model.safetensors", valid)], "label 'v 1' is not valid",
                 label="v 1"),
        BadInput("over-size-limit", [("model.safetensors", valid)], "limit (STAGEGATE_MAX_FILE_SIZE)",
                 status=413, settings={"STAGEGATE_MAX_FILE_SIZE": 100}),
        BadInput("no-weight-files", [("config.json", CONFIG)], "no weight files"),
        BadInput("config-not-json", [("model.safetensors", valid), ("config.json", b"{oops")],
                 "config.json is not valid JSON"),
        BadInput("index-names-missing-shard",
                 [("model-00001-of-00002.safetensors", valid),
                  ("model.safetensors.index.json", json.dumps({"weight_map": {
                      "embed.weight": "model-00002-of-00002.safetensors"}}).encode())],
                 "not among the uploaded files"),
        BadInput("tensor-in-two-shards",
                 [("a.safetensors", valid), ("b.safetensors", valid)], "appears in both"),
    ]


def as_upload(name: str, data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name.rsplit("/", 1)[-1] or "file", data,
                              content_type="application/octet-stream")


def multipart_data(case: BadInput) -> dict:
    data: dict = {"family": case.family, "label": case.label}
    for path, content in case.files:
        data.setdefault(f"path:{path}", []).append(as_upload(path, content))
    return data


def write_folder(root, files: list[tuple[str, bytes]]):
    root.mkdir(parents=True, exist_ok=True)
    for path, content in files:
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return root


