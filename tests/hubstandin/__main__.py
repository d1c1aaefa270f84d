"""Serve the stand-in Hub: `python -m tests.hubstandin --port N --config FILE --workdir DIR`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flask import Flask
from werkzeug.serving import make_server

from tests.hubstandin import access, http, read, write
from tests.hubstandin.state import Hub


def make_app(config: dict, workdir: Path) -> Flask:
    app = Flask("hubstandin")
    hub = Hub(config, workdir)
    http.install(app, hub, workdir / "requests.log")
    read.register(app, hub)
    write.register(app, hub)
    access.register(app, hub)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args()
    app = make_app(json.loads(args.config.read_text()), args.workdir)
    make_server("127.0.0.1", args.port, app, threaded=True).serve_forever()


if __name__ == "__main__":
    main()
