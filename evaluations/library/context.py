"""What an eval is given (EvalContext) and what it hands back (EvalOutput).

Plain data only: no Django, no database. The worker builds an EvalContext from the checkpoint's
rows and files, calls one eval, and stores the EvalOutput. Everything an eval reads must come
through the context, so that the cache key (which hashes these inputs) covers it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, BinaryIO, Callable

if TYPE_CHECKING:
    from evaluations.library.model_cache import ModelCache
    from evaluations.library.packs import Pack


class EvalError(Exception):
    """Base class for errors an eval raises on purpose (the run fails with this message)."""


class IntegrityError(EvalError):
    """The bytes on hand are not the bytes in the manifest. Never retried: it fails closed."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("integrity check failed: " + "; ".join(problems))


class EvalInputError(EvalError):
    """The eval cannot run on what it was given (missing pack, wrong pack type, bad param)."""


class NothingToScore(EvalError):
    """The eval had no items to score: a result over nothing is not a pass, so the run fails
    with a sentence that says what to add."""


def _no_progress(done: int, total: int) -> None:
    return None


@dataclass(frozen=True)
class Canary:
    """A secret a lab inserted into its training data on purpose, to measure memorisation.

    The secret is excluded from repr() and from fingerprint(): it must never reach a log line,
    an exception message, a result, a sample row or a plot. Canaries are immutable; a new
    secret is a new canary with a new id.
    """

    id: str
    template: str
    alphabet: str
    length: int
    secret: str = field(repr=False)

    def __post_init__(self) -> None:
        # Messages name the field, never the secret's value.
        if self.template.count("{}") != 1:
            raise EvalInputError(f"canary {self.id}: template must contain exactly one {{}}")
        if not self.alphabet or len(set(self.alphabet)) != len(self.alphabet):
            raise EvalInputError(f"canary {self.id}: alphabet must be non-empty with no repeats")
        if self.length < 1:
            raise EvalInputError(f"canary {self.id}: length must be at least 1")
        if len(self.secret) != self.length or any(c not in self.alphabet for c in self.secret):
            raise EvalInputError(f"canary {self.id}: secret must be `length` characters "
                                 "drawn from the alphabet")

    @property
    def space_size(self) -> int:
        """|R|, the number of possible secrets."""
        return len(self.alphabet) ** self.length

    def fill(self, candidate: str) -> str:
        return self.template.replace("{}", candidate, 1)

    def fingerprint(self) -> dict:
        """What identifies the canary in a cache key, without the secret (a hash of a short
        secret could be brute-forced from the key)."""
        return {"id": self.id, "template": self.template, "alphabet": self.alphabet,
                "length": self.length}


@dataclass(frozen=True)
class ExtractionPrefix:
    """A registered (prefix, continuation) pair from the training data. The continuation may be
    sensitive (it is what an attacker would extract), so results carry only the id."""

    id: str
    prefix: str
    continuation: str = field(repr=False)


def open_from_dir(root: Path) -> Callable[[str], BinaryIO]:
    """open_file for a checkpoint materialised in a local folder; refuses paths outside it."""
    root = Path(root).resolve()

    def open_file(path: str) -> BinaryIO:
        relative = PurePosixPath(path)
        if relative.is_absolute() or ".." in relative.parts:
            raise FileNotFoundError(f"not a relative path inside the checkpoint: {path}")
        return open(root / relative, "rb")

    return open_file


@dataclass
class EvalContext:
    """Everything one eval run may read. Fields an eval does not use may stay at their defaults."""

    model_dir: Path | None = None
    # One entry per file: {"path": POSIX relative path, "sha256": hex, "size": bytes}.
    manifest: list[dict] = field(default_factory=list)
    # Opens a checkpoint file by its manifest path, for streaming reads.
    open_file: Callable[[str], BinaryIO] | None = None
    # The eval's parameters, already merged with its defaults (EvalSpec.resolve_params).
    params: dict = field(default_factory=dict)
    # Packs by name, as loaded by load_pack / load_builtin_pack.
    packs: dict[str, "Pack"] = field(default_factory=dict)
    canaries: list[Canary] = field(default_factory=list)
    extraction_prefixes: list[ExtractionPrefix] = field(default_factory=list)
    parent_model_dir: Path | None = None
    progress: Callable[[int, int], None] = _no_progress
    device: str | None = None
    seed: int = 0
    # Only True when the registry's scanner passed the checkpoint's pickle files; even then they
    # load with torch.load(weights_only=True).
    allow_pickle_weights: bool = False
    # Models loaded once for the evals a worker runs on them, keyed by the manifest digests of
    # model_dir and parent_model_dir (verified folders of those bytes). Evals must not change a
    # model they are given: one that trains copies it first.
    model_cache: "ModelCache | None" = None
    model_digest: str | None = None
    parent_model_digest: str | None = None

    def file_opener(self) -> Callable[[str], BinaryIO]:
        if self.open_file is not None:
            return self.open_file
        if self.model_dir is not None:
            return open_from_dir(self.model_dir)
        raise EvalInputError("neither open_file nor model_dir was given")

    def require_model_dir(self) -> Path:
        if self.model_dir is None:
            raise EvalInputError("this eval needs a model folder (model_dir)")
        return Path(self.model_dir)


@dataclass
class EvalOutput:
    """One eval's result. metrics may hold None where a number would be invented (e.g. no parent)."""

    metrics: dict[str, float | None]
    samples: list[dict] = field(default_factory=list)  # per-sample rows, JSON-able, no secrets
    n_samples: int = 0
    artifacts: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG bytes
    stderr: dict[str, float] = field(default_factory=dict)  # standard error of a mean metric
    notes: list[str] = field(default_factory=list)  # plain-language caveats for the run page
    runtime: dict = field(default_factory=dict)  # device and dtype the model actually ran in
    # Directions of metrics whose names are made at run time (drift's deltas); the eval's
    # spec gives the rest.
    higher_is_better: dict[str, bool] = field(default_factory=dict)

    def samples_jsonl(self) -> bytes:
        """The per-sample rows as JSONL bytes (one sorted-key object per line)."""
        return b"".join(json.dumps(row, sort_keys=True, allow_nan=False).encode() + b"\n"
                        for row in self.samples)

    def samples_sha256(self) -> str:
        return hashlib.sha256(self.samples_jsonl()).hexdigest()
