from django.db import transaction
from django.dispatch import Signal

# Sent after the commit that finished an eval run. Arguments: run_id, manifest_digest,
# eval_name, status. The releases app listens, to move releases out of `evaluating`.
eval_run_finished = Signal()


def send_finished_after_commit(run) -> None:
    run_id, digest, name, status = run.pk, run.manifest_digest, run.eval_name, run.status
    transaction.on_commit(lambda: eval_run_finished.send(
        sender="evaluations", run_id=run_id, manifest_digest=digest, eval_name=name,
        status=status))


# Sent after the commit that registered a canary or an extraction prefix for a family: runs
# keyed on the family's registered data have new keys now. Argument: family_id. The releases
# app listens, to request the new evidence for the family's open releases.
family_inputs_changed = Signal()


def send_family_inputs_changed_after_commit(family_id: int) -> None:
    transaction.on_commit(lambda: family_inputs_changed.send(sender="evaluations",
                                                             family_id=family_id))
