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
