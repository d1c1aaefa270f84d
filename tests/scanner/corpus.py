"""Build the scanner corpus: malicious variants from the public record and benign checkpoints.

    python -m tests.scanner.corpus OUT_DIR        # from the repository root

writes OUT_DIR/malicious/*, OUT_DIR/benign/*, OUT_DIR/markers/ (empty: a payload that runs
creates its marker there) and OUT_DIR/corpus.json describing every file. Nothing here is
committed as a binary; the tests build the corpus into a session-scoped temporary folder.

Building never runs a payload: malicious files are assembled opcode by opcode (tests/scanner/
asm.py), and benign files come from torch.save / numpy / safetensors on freshly made tensors.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `tests.scanner` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.scanner import corpus_containers  # noqa: E402,F401  (registers its recipes)
from tests.scanner.corpus_benign import BENIGN  # noqa: E402
from tests.scanner.corpus_malicious import RECIPES, Ctx  # noqa: E402


@dataclass
class Malicious:
    name: str
    path: Path
    loader: str       # how a victim opens it: torch | pickle | numpy
    marker: Path
    source: str


@dataclass
class Benign:
    name: str
    path: Path
    loader: str       # torch | numpy | safetensors
    note: str


@dataclass
class Corpus:
    folder: Path
    malicious: list[Malicious]
    benign: list[Benign]

    @property
    def sharded_folder(self) -> Path:
        return self.folder / "benign" / "sharded"

    @property
    def gpt2_folder(self) -> Path:
        return self.folder / "benign" / "gpt2"


def build(folder: Path) -> Corpus:
    folder = Path(folder)
    bad, good, markers = folder / "malicious", folder / "benign", folder / "markers"
    for path in (bad, good, markers):
        path.mkdir(parents=True, exist_ok=True)
    malicious = []
    for recipe in RECIPES:
        marker = markers / recipe.name
        file_name, data, loader = recipe.build(Ctx(folder=bad, marker=marker))
        path = bad / f"{recipe.name}--{file_name}"
        path.write_bytes(data)
        malicious.append(Malicious(recipe.name, path, loader, marker, recipe.source))
    benign = []
    for name, builder in BENIGN:
        file_name, loader, note = builder(good)
        benign.append(Benign(name, good / file_name, loader, note))
    corpus = Corpus(folder, malicious, benign)
    (folder / "corpus.json").write_text(json.dumps(
        {"malicious": [_plain(m) for m in malicious], "benign": [_plain(b) for b in benign]},
        indent=2))
    return corpus


def _plain(item) -> dict:
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(item).items()}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.scanner.corpus OUT_DIR", file=sys.stderr)
        return 2
    corpus = build(Path(argv[0]))
    print(f"{len(corpus.malicious)} malicious variants, {len(corpus.benign)} benign files "
          f"in {corpus.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
