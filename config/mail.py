"""The development mail backend: every message kept whole in a file under the data dir, and one
line about it on the console, so `make run` shows who was told what without filling the screen."""

from __future__ import annotations

import sys

from django.core.mail.backends.filebased import EmailBackend as FileBackend


class SummaryBackend(FileBackend):
    def send_messages(self, email_messages) -> int:
        sent = super().send_messages(email_messages)
        for message in email_messages or []:
            recipients = ", ".join(message.recipients())
            sys.stdout.write(f"mail to {recipients}: {message.subject}  (whole message in "
                             f"{self.file_path}/)\n")
        sys.stdout.flush()
        return sent
