"""python manage.py evaluate CHECKPOINT_ID [--eval NAME ...] [--wait] [--json]"""

from __future__ import annotations

import json
import sys
import time

from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError

from evaluations.library.results import merge_result_records
from evaluations.models import EvalRun
from evaluations.services import EvalRequestError, request_evals, retry_eval_run
from models.models import Checkpoint


class Command(BaseCommand):
    help = ("Queue evals of a checkpoint (the policy's required ones when no --eval is given); "
            "with --wait, wait for them and print the results.")

    def add_arguments(self, parser):
        parser.add_argument("checkpoint_id", type=int)
        parser.add_argument("--eval", action="append", dest="evals", metavar="NAME",
                            help="an eval or pack name; repeat for several")
        parser.add_argument("--retry", action="store_true",
                            help="ask again for the named (or required) evals' runs that failed "
                                 "or errored; nothing re-queues them otherwise")
        parser.add_argument("--wait", action="store_true", help="wait until every run finishes")
        parser.add_argument("--timeout", type=float, default=6 * 3600,
                            help="seconds to wait with --wait (default 6 h)")
        parser.add_argument("--json", action="store_true", dest="as_json",
                            help="print JSON: run records, or with --wait the lm-eval-shaped results")

    def handle(self, *args, checkpoint_id, evals, retry, wait, timeout, as_json, **options):
        checkpoint = Checkpoint.objects.filter(pk=checkpoint_id).first()
        if checkpoint is None:
            raise CommandError(f"no checkpoint with id {checkpoint_id}")
        try:
            runs = request_evals(actor=None, checkpoint=checkpoint, eval_names=evals)
            if retry:
                runs = [retry_eval_run(actor=None, run=run) if run.can_retry else run
                        for run in runs]
        except (EvalRequestError, PermissionDenied) as exc:
            raise CommandError(str(exc)) from None
        if wait:
            runs = self._wait(runs, timeout)
        if as_json:
            if wait:
                record = merge_result_records([r.result for r in runs if r.result])
                record["runs"] = [_run_json(r) for r in runs]
                self.stdout.write(json.dumps(record, default=str))
            else:
                self.stdout.write(json.dumps([_run_json(r) for r in runs], default=str))
        else:
            for run in runs:
                metrics = ", ".join(f"{k}={_fmt(v)}" for k, v in run.metrics.items())
                self.stdout.write(f"{run.eval_name:<22} {run.status:<10} run {run.pk}"
                                  + (f"  {metrics}" if metrics else "")
                                  + (f"  {run.error.splitlines()[0]}" if run.error else ""))
        if wait and any(r.status != EvalRun.Status.SUCCEEDED for r in runs):
            sys.exit(1)

    def _wait(self, runs: list[EvalRun], timeout: float) -> list[EvalRun]:
        deadline = time.monotonic() + timeout
        ids = [r.pk for r in runs]
        tty = self.stderr.isatty()
        while True:
            runs = list(EvalRun.objects.filter(pk__in=ids).order_by("pk"))
            if tty:
                line = "  ".join(f"{r.eval_name}:{r.status}"
                                 + (f" {r.progress_percent}%" if r.status == "running" else "")
                                 for r in runs)
                self.stderr.write(f"\r{line[:200]:<200}", ending="")
            if all(r.is_finished for r in runs):
                if tty:
                    self.stderr.write("")
                return runs
            if time.monotonic() > deadline:
                raise CommandError(f"timed out after {timeout:.0f}s waiting for runs {ids}; "
                                   "is a worker consuming the 'evals' queue?")
            time.sleep(0.5)


def _run_json(run: EvalRun) -> dict:
    return {"id": run.pk, "eval": run.eval_name, "status": run.status, "metrics": run.metrics,
            "error": run.error or None, "cache_key": run.cache_key,
            "manifest_digest": run.manifest_digest}


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
