from pathlib import Path

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = ("Verify a downloaded release folder offline: model.sig (OpenSSF model signature) "
            "over its files and release.intoto.json (the signed release attestation). Exit 0 "
            "when both verify, 1 naming what failed, 2 on usage errors.")

    def add_arguments(self, parser):
        parser.add_argument("dir", help="the folder, e.g. from `hf download ORG/NAME --local-dir DIR`")
        parser.add_argument("--public-key", metavar="PEM", action="append", default=[],
                            help="the lab's public key (repeatable; default: this instance's "
                                 "current and retired keys)")
        parser.add_argument("--ignore-paths", metavar="PATH", nargs="+", default=[],
                            help="files not to check, e.g. README.md from a gated Hub target")
        parser.add_argument("--json", action="store_true", help="print the attested decision")

    def handle(self, *args, **options):
        import json

        from signing import keys
        from signing.verify import VerificationFailed, verify_release_folder

        folder = Path(options["dir"])
        if not folder.is_dir():
            raise CommandError(f"{folder} is not a folder: give the folder the release was "
                               "downloaded to", returncode=2)
        try:
            public_keys = ([k for name in options["public_key"]
                            for k in keys.load_public_pems(Path(name).read_bytes(), source=name)]
                           if options["public_key"] else keys.published_keys())
        except OSError as exc:
            raise CommandError(f"cannot read the public key: {exc}", returncode=2) from None
        except keys.SigningKeyMissing as exc:
            raise CommandError(str(exc), returncode=2) from None
        try:
            report = verify_release_folder(folder, public_keys,
                                           ignore_paths=options["ignore_paths"])
        except VerificationFailed as exc:
            raise CommandError(f"verification failed: {exc}", returncode=1) from None
        predicate = report.statement.get("predicate", {})
        if options["json"]:
            self.stdout.write(json.dumps({"ok": True, "key_id": report.model_signature_key,
                                          "files": report.files_verified,
                                          "predicate": predicate}, indent=2))
            return
        stage = predicate.get("stage", {})
        policy = predicate.get("policy", {})
        approvals = ", ".join(f"{a['reviewer']} ({a['role']})"
                              for a in predicate.get("approvals", [])) or "none required"
        self.stdout.write(
            f"model.sig: verified, {report.files_verified} files signed by key "
            f"{report.model_signature_key[:16]}…\n"
            f"release.intoto.json: verified: {predicate.get('repo')} stage {stage.get('name')} "
            f"({stage.get('audience')}), policy {policy.get('name')} {policy.get('version')}, "
            f"tier {predicate.get('tier', {}).get('name')}, approvals: {approvals}, manifest "
            f"{str(predicate.get('manifest_digest'))[:12]}…")
