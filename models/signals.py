"""Signals the registry sends; apps that depend on it (evaluations, releases) listen, so the
registry never imports them."""

from django.dispatch import Signal

# Sent after the commit that made a checkpoint `ready` (nothing stops it being loaded now).
# Arguments: checkpoint_id.
checkpoint_ready = Signal()


def send_ready_after_commit(checkpoint_id: int) -> None:
    from django.db import transaction

    transaction.on_commit(lambda: checkpoint_ready.send(sender="registry",
                                                        checkpoint_id=checkpoint_id))
