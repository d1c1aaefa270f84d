"""python manage.py add_eval_task TASK.yaml DATA_FILE...
python manage.py add_eval_task --kind inspect task.py DATA_FILE... --metric accuracy=higher"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from evaluations.services import EvalRequestError, add_harness_task


class Command(BaseCommand):
    help = ("Register an lm-evaluation-harness YAML task (dataset_path: json) or an Inspect task "
            "file with its data files; it becomes an eval under the task's name.")

    def add_arguments(self, parser):
        parser.add_argument("task", help="the task's YAML file (lm_eval) or Python file (inspect)")
        parser.add_argument("--kind", choices=["lm_eval", "inspect"], default="lm_eval")
        parser.add_argument("--metric", action="append", default=[], metavar="NAME=higher|lower",
                            help="inspect: a metric the task reports and which way is better; "
                                 "repeat for several")
        parser.add_argument("files", nargs="+",
                            help="its data files, named in dataset_kwargs.data_files relative "
                                 "to the YAML's folder")

    def handle(self, *args, task, files, kind, metric, **options):
        config = Path(task)
        if not config.is_file():
            raise CommandError(f"{task} is not a file")
        data = {}
        for name in files:
            path = Path(name)
            if not path.is_file():
                raise CommandError(f"{name} is not a file")
            try:
                relative = path.resolve().relative_to(config.resolve().parent).as_posix()
            except ValueError:
                raise CommandError(f"{name} is not inside the task's folder "
                                   f"{config.resolve().parent}") from None
            data[relative] = path.read_bytes()
        metrics = {}
        for item in metric:
            name, _, better = item.partition("=")
            if better not in ("higher", "lower") or not name:
                raise CommandError(f"--metric {item!r}: write NAME=higher or NAME=lower")
            metrics[name] = better == "higher"
        try:
            row = add_harness_task(actor=None, config=config.read_bytes(), files=data, kind=kind,
                                   metrics=metrics)
        except EvalRequestError as exc:
            raise CommandError(f"{config.name}: {exc}") from None
        self.stdout.write(f"task {row.name} ({len(row.files)} data files, sha256 "
                          f"{row.sha256[:12]}) is now the eval `{row.name}`; it reports "
                          f"{', '.join(row.metrics)}")
