"""docs/deploy.md quotes the nginx server block that the download tests run, not a copy that
could drift from it."""

from __future__ import annotations

from pathlib import Path

from tests.webservers import SERVER_BLOCK

DEPLOY = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
BEGIN = "<!-- nginx-stagegate.conf: begin -->\n```nginx\n"
END = "```\n<!-- nginx-stagegate.conf: end -->"


def test_deploy_docs_quote_the_tested_server_block_exactly():
    text = DEPLOY.read_text()
    assert BEGIN in text and END in text
    quoted = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert quoted == SERVER_BLOCK.read_text()
