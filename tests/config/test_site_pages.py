"""Site-wide addresses a newcomer's browser or habits ask for."""

from __future__ import annotations

import pytest


@pytest.mark.django_db
def test_the_favicon_is_served_and_linked(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"].endswith("/favicon.svg")
    assert 'rel="icon"' in client.get("/login/").content.decode()


@pytest.mark.django_db
def test_djangos_default_sign_in_address_leads_to_sign_in(client):
    response = client.get("/accounts/login/?next=/reviews/")
    assert response.status_code == 301 and response["Location"] == "/login/?next=/reviews/"
    assert client.get(response["Location"]).status_code == 200


def test_development_mail_is_one_line_on_the_console_and_whole_in_a_file(tmp_path, capsys,
                                                                         settings):
    from django.core import mail

    settings.EMAIL_BACKEND = "config.mail.SummaryBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path)
    mail.send_mail("[Stagegate] v2 waits for your review", "A long body\n" * 40,
                   "stagegate@localhost", ["bob@example.org"])
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1
    assert "mail to bob@example.org: [Stagegate] v2 waits for your review" in printed
    assert "A long body" in "".join(p.read_text() for p in tmp_path.iterdir())
