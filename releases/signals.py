"""What releases tell the apps that follow them (publishing mirrors), always after the commit
that made it true, so a receiver never acts on a change that was rolled back. Receivers queue
work; they hold no business logic (STYLE.md §1)."""

from django.dispatch import Signal

# A stage was published: release_id, stage.
stage_published = Signal()
# A release was withdrawn: release_id.
release_withdrawn = Signal()
# Who may download a release changed (a grant, a decision, a revocation): release_id.
access_changed = Signal()


def send_on_commit(signal: Signal, **kwargs) -> None:
    from django.db import transaction

    transaction.on_commit(lambda: signal.send(sender=None, **kwargs))
