"""A checkpoint's model card (its README.md): YAML front matter and markdown body, read once per
blob (blobs never change) and only up to a size a card plausibly has."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable

import yaml

from models.blobstore import open_blob
from models.formats.layout import FileKind

CARD_LIMIT = 1_000_000  # bytes; a larger README is not rendered or parsed


@dataclass(frozen=True)
class ModelCard:
    body: str  # markdown, front matter removed
    front_matter: dict = field(default_factory=dict)  # empty when absent or not YAML


def model_card(files: Iterable) -> ModelCard | None:
    """The card among a checkpoint's files (CheckpointFile rows), or None."""
    card = next((f for f in files if f.kind == FileKind.MODEL_CARD), None)
    if card is None or card.size > CARD_LIMIT:
        return None
    return _read(card.blob_id)


@lru_cache(maxsize=256)
def _read(blob_id: str) -> ModelCard:
    with open_blob(blob_id) as stream:
        text = stream.read(CARD_LIMIT).decode("utf-8", errors="replace")
    if not text.startswith("---"):
        return ModelCard(body=text)
    parts = text.split("---", 2)
    if len(parts) < 3:
        return ModelCard(body=text)
    try:
        front = yaml.safe_load(parts[1])
    except yaml.YAMLError:
        front = None
    return ModelCard(body=parts[2], front_matter=front if isinstance(front, dict) else {})
