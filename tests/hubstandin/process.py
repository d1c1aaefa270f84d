"""The stand-in Hub as a process of its own on a free loopback port, with its users."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.webservers import ServerProcess

ORG = "acme-hf"


@dataclass(frozen=True)
class HubUser:
    name: str
    token: str


# The lab's publishing bot (a member of the organisation, write token), a member with a read
# token, and people outside the organisation: a partner, a stranger.
USERS = {
    "bot": HubUser("acme-bot", "hf_acme_bot_write"),
    "reader": HubUser("acme-reader", "hf_acme_reader_read"),
    "erin": HubUser("erin-hf", "hf_erin"),
    "mallory": HubUser("mallory-hf", "hf_mallory"),
}


def standin_config(tamper_paths=()) -> dict:
    users = [{"name": u.name, "token": u.token, "role": "read" if key == "reader" else "write",
              "fullname": u.name.title(), "email": f"{u.name}@hub.example"}
             for key, u in USERS.items()]
    return {"users": users, "orgs": {ORG: [USERS["bot"].name, USERS["reader"].name]},
            "tamper_paths": list(tamper_paths)}


class HubStandin(ServerProcess):
    name = "hubstandin"

    def __init__(self, workdir: Path, config: dict | None = None):
        super().__init__(workdir)
        self.config_path = self.workdir / "config.json"
        self.config_path.write_text(json.dumps(config or standin_config()))

    def command(self) -> list[str]:
        return [sys.executable, "-m", "tests.hubstandin", "--port", str(self.port),
                "--config", str(self.config_path), "--workdir", str(self.workdir)]

    def requests(self) -> list[dict]:
        path = self.workdir / "requests.log"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def writes(self, since: int = 0) -> list[dict]:
        """The requests that could change something (every method but GET and HEAD)."""
        return [r for r in self.requests()[since:] if r["method"] not in ("GET", "HEAD")]
