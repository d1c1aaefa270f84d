"""Checkpoints on local disk: which files of a folder make up a checkpoint."""

from __future__ import annotations

import os
from pathlib import Path


class NotACheckpointPath(ValueError):
    pass


def collect_files(root: Path) -> tuple[list[tuple[str, Path]], list[str]]:
    """(checkpoint path, local file) for PATH or every file under it; hidden entries skipped.

    File symlinks are followed (a Hugging Face cache snapshot is all symlinks); folder symlinks
    are not, so a link cannot pull a whole tree into a checkpoint by accident.
    """
    if root.is_file():
        return [(root.name, root)], []
    if not root.is_dir():
        raise NotACheckpointPath(f"{root} does not exist; give a checkpoint file or a model folder")
    files, skipped = [], []
    for folder, subfolders, names in os.walk(root, followlinks=False):
        hidden = sorted(d for d in subfolders if d.startswith("."))
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        skipped.extend((Path(folder) / d).relative_to(root).as_posix() + "/" for d in hidden)
        for name in sorted(names):
            local = Path(folder) / name
            relative = local.relative_to(root).as_posix()
            if name.startswith("."):
                skipped.append(relative)
            elif local.is_file():
                files.append((relative, local))
    return sorted(files), skipped
