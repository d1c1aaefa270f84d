"""The errors the policy engine raises. Both carry a message a person can act on."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PolicyProblem:
    """One mistake in a policy file, located at the line (and column) that has to change."""

    source: str
    line: int  # 1-based, as editors count
    column: int  # 1-based
    message: str  # starts with the dotted path of the offending key, e.g. "tiers[1].name ..."

    def __str__(self) -> str:
        return f"{self.source}:{self.line}:{self.column}: {self.message}"


class PolicyError(ValueError):
    """A policy file that cannot be loaded. `problems` lists every mistake found, in file order;
    the message is one `source:line:column: path problem` line per mistake, like a compiler's, so
    an editor or a terminal can jump to each."""

    def __init__(self, problems: list[PolicyProblem]):
        if not problems:
            raise ValueError("PolicyError needs at least one problem")
        self.problems = sorted(problems, key=lambda p: (p.line, p.column))
        super().__init__("\n".join(str(p) for p in self.problems))

    @property
    def line(self) -> int:
        return self.problems[0].line

    @property
    def column(self) -> int:
        return self.problems[0].column


class UnknownStage(ValueError):
    """A stage name the policy does not define (a typo in an API call, or a stage a newer policy
    version dropped)."""
