"""Panels other apps add to the checkpoint page, without the registry importing them.

An app registers (title, url name) in its AppConfig.ready(); the checkpoint page loads each
panel from that URL (with the checkpoint id) through htmx.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Panel:
    key: str
    title: str
    url_name: str  # reversed with args=[checkpoint.pk]
    order: int = 100


_panels: dict[str, Panel] = {}


def register_panel(panel: Panel) -> None:
    _panels[panel.key] = panel


def checkpoint_panels() -> list[Panel]:
    return sorted(_panels.values(), key=lambda p: p.order)
