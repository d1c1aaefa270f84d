"""python manage.py scan_file PATH... [--json]

The static scanner alone, for security reviewers (DESIGN.md §4). Exit status: 0 when every
file is safe, 1 when any is unsafe or unknown, 2 on usage errors (no path, a missing path).
A folder stands for every file under it. Nothing is loaded, imported or written.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from models.scanner import ScanResult, scan_path


def expand(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file()
                                and not any(part.startswith(".") for part in
                                            p.relative_to(path).parts)))
        elif path.is_file():
            files.append(path)
        else:
            raise CommandError(f"{raw}: no such file or folder", returncode=2)
    if not files:
        raise CommandError("no files to scan", returncode=2)
    return files


def describe(path: Path, result: ScanResult) -> str:
    verdict = result.verdict if result.verdict == "safe" else result.verdict.upper()
    detail = result.format
    if result.tensors is not None:
        parameters = sum(t.numel for t in result.tensors)
        detail += f", {len(result.tensors)} tensors, {parameters:,} parameters"
    lines = [f"{path}: {verdict} ({detail})"]
    for finding in result.findings:
        lines.append(f"  - [{finding.severity}] {finding.message}")
    return "\n".join(lines)


class Command(BaseCommand):
    help = "Statically scan model files for pickled code; exit 0 only if every file is safe."

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", metavar="PATH",
                            help="a model file (.bin .pt .pth .ckpt .pkl .npy .npz .safetensors) "
                                 "or a folder")
        parser.add_argument("--json", action="store_true", dest="as_json",
                            help="print one JSON array with one object per file")

    def handle(self, *args, paths: list[str], as_json: bool = False, **options):
        files = expand(paths)
        report = []
        for path in files:
            result = scan_path(path)
            report.append((path, result))
        if as_json:
            self.stdout.write(json.dumps([{"path": str(path), **result.to_json()}
                                          for path, result in report], indent=2))
        else:
            for path, result in report:
                self.stdout.write(describe(path, result))
            unsafe = sum(r.verdict != "safe" for _, r in report)
            self.stdout.write(f"{len(report)} file(s) scanned, {unsafe} not safe")
        if any(result.verdict != "safe" for _, result in report):
            sys.exit(1)
