"""Scanner benchmark: Stagegate's scanner against picklescan, modelscan and fickling, and against
torch.load itself, all measured in this run on the same files.

Prints:
  - for each tool, over the generated corpus (tests/scanner/corpus.py): detection rate on the
    malicious variants, false-positive rate on the benign checkpoints, scan errors, throughput;
  - Stagegate's scanner throughput in MB/s on a ~2 GB torch.save checkpoint against
    torch.load(weights_only=True) on the same file (default and mmap=True), and the other
    scanners on that file.

The three tools are installed from PyPI into a separate venv (benchmarks/out/tools-venv, which
git ignores). Each tool is called through its own "scan this file" entry point, in its own
process; nothing in the corpus is ever loaded unsafely here.

Usage: .venv/bin/python benchmarks/scanner.py [--size-gb 2] [--skip-large]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import PYTHON, ROOT, human  # noqa: E402

OUT = ROOT / "benchmarks" / "out"
TOOLS_VENV = OUT / "tools-venv"
TOOLS = {"picklescan": "picklescan==1.0.5", "modelscan": "modelscan==0.8.8",
         "fickling": "fickling==0.1.12"}
EXTRA = ["typing_extensions"]  # fickling 0.1.12 imports it without declaring it

DRIVER = textwrap.dedent("""
    import json, sys, time, zipfile, tarfile, warnings, logging
    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    tool, paths = sys.argv[1], json.load(sys.stdin)

    def picklescan_scan(path):
        from picklescan.scanner import scan_file_path
        r = scan_file_path(path)
        if r.issues_count or r.infected_files:
            return "flagged"
        if r.scan_err:
            return "error"
        return "clean" if r.scanned_files else "skipped"

    def modelscan_scan(path):
        from modelscan.modelscan import ModelScan
        r = ModelScan().scan(path)
        if r["issues"]:
            return "flagged"
        if r["errors"]:
            return "error"
        return "clean" if r["summary"]["scanned"]["total_scanned"] else "skipped"

    def fickling_scan(path):
        # The dispatch fickling's own Hugging Face scan uses: zip archives member by member,
        # raw pickles as stacked pickles; tar / NumPy files are not supported and skipped.
        import fickling
        from fickling.analysis import Severity
        with open(path, "rb") as f:
            head = f.read(8)
        if zipfile.is_zipfile(path):
            results = list(fickling.scan_zip_archive(path, graceful=True).values())
        elif head[:6] == b"\\x93NUMPY" or tarfile.is_tarfile(path):
            return "skipped"
        else:
            results = [fickling.scan_file(path, graceful=True)]
        if any(r.severity > Severity.LIKELY_SAFE for r in results):
            return "flagged"
        if any(r.errors for r in results):
            return "error"
        return "clean" if results else "skipped"

    scan = {"picklescan": picklescan_scan, "modelscan": modelscan_scan,
            "fickling": fickling_scan}[tool]
    out = {}
    for path in paths:
        start = time.perf_counter()
        try:
            status = scan(path)
        except Exception as exc:
            status = "error"
        out[path] = [status, time.perf_counter() - start]
    print(json.dumps(out))
""")

STAGEGATE_DRIVER = textwrap.dedent("""
    import json, sys, time
    import torch  # imported up front, as the other measurements do
    from models.scanner import scan_path
    out = {}
    for path in json.load(sys.stdin):
        start = time.perf_counter()
        result = scan_path(path)
        out[path] = ["clean" if result.verdict == "safe" else "flagged",
                     time.perf_counter() - start, result.verdict]
    print(json.dumps(out))
""")

TORCH_LOAD = textwrap.dedent("""
    import sys, time, torch
    path, mmap = sys.argv[1], sys.argv[2] == "mmap"
    start = time.perf_counter()
    state = torch.load(path, weights_only=True, mmap=mmap, map_location="cpu")
    loaded = time.perf_counter() - start
    touched = sum(float(t.view(-1)[-1]) for t in state.values())  # fault in the last page
    print(loaded, time.perf_counter() - start)
""")


def ensure_tools() -> Path:
    python = TOOLS_VENV / "bin" / "python"
    stamp = TOOLS_VENV / ".installed"
    wanted = " ".join(list(TOOLS.values()) + EXTRA)
    if stamp.exists() and stamp.read_text() == wanted:
        return python
    base = getattr(sys, "_base_executable", None) or sys.executable
    subprocess.run([base, "-m", "venv", "--clear", str(TOOLS_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *TOOLS.values(), *EXTRA],
                   check=True)
    stamp.write_text(wanted)
    return python


def run_driver(python: Path, code: str, args: list[str], paths: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([str(python), "-c", code, *args], input=json.dumps(paths), text=True,
                          capture_output=True, cwd=ROOT, env=env, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"{args or 'stagegate'} driver failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def corpus_table(tools_python: Path, corpus) -> list[str]:
    malicious = [str(m.path) for m in corpus.malicious]
    benign = [str(b.path) for b in corpus.benign]
    everything = malicious + benign
    total_bytes = sum(os.path.getsize(p) for p in everything)
    results = {"stagegate": run_driver(Path(PYTHON), STAGEGATE_DRIVER, [], everything)}
    for tool in TOOLS:
        results[tool] = run_driver(tools_python, DRIVER, [tool], everything)
    lines = [f"Corpus: {len(malicious)} malicious variants, {len(benign)} benign checkpoints "
             f"({human(total_bytes)})", "",
             f"{'scanner':<11} {'detected':>12} {'det.+error':>11} {'false pos.':>11} "
             f"{'benign err.':>12} {'files/s':>8} {'MB/s':>7}  missed"]
    for tool, by_path in results.items():
        status = {p: v[0] for p, v in by_path.items()}
        seconds = sum(v[1] for v in by_path.values())
        detected = sum(status[p] == "flagged" for p in malicious)
        flagged_or_error = sum(status[p] in ("flagged", "error") for p in malicious)
        false_pos = sum(status[p] == "flagged" for p in benign)
        benign_errors = sum(status[p] == "error" for p in benign)
        missed = [m.name for m in corpus.malicious if status[str(m.path)] != "flagged"]
        lines.append(
            f"{tool:<11} {_pct(detected, malicious):>12} {_pct(flagged_or_error, malicious):>11} "
            f"{_pct(false_pos, benign):>11} {_pct(benign_errors, benign):>12} "
            f"{len(everything) / seconds:>8.0f} {total_bytes / seconds / 1e6:>7.2f}  "
            f"{len(missed)}")
        if missed and tool != "stagegate":
            lines.append(textwrap.fill(", ".join(missed), 100, initial_indent="            ",
                                       subsequent_indent="            "))
    verdicts = [v[2] for v in results["stagegate"].values()]
    lines.append(f"\nStagegate verdicts: {verdicts.count('unsafe')} unsafe, "
                 f"{verdicts.count('unknown')} unknown, {verdicts.count('safe')} safe "
                 "(detected = not safe; unknown quarantines too)")
    return lines


def _pct(n: int, of: list) -> str:
    return f"{n}/{len(of)} {100 * n / len(of):3.0f}%"


def large_table(tools_python: Path, size_gb: float) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="scanner-bench-") as folder:
        path = Path(folder) / "large_model.pt"
        make = textwrap.dedent(f"""
            import torch
            # ~8 MB tensors in a transformer-like naming: a realistic pickle for 2 GB
            total, i, state = int({size_gb} * 1024**3), 0, {{}}
            while total > 0:
                rows = min(512, max(1, total // (4 * 4096)))
                state[f"model.layers.{{i // 4}}.mlp.w{{i % 4}}.weight"] = torch.randn(rows, 4096)
                total -= rows * 4096 * 4
                i += 1
            torch.save(state, {str(path)!r})
        """)
        subprocess.run([PYTHON, "-c", make], check=True)
        size = path.stat().st_size
        count = subprocess.run([PYTHON, "-c", f"import zipfile; print(sum('/data/' in n for n in "
                                f"zipfile.ZipFile({str(path)!r}).namelist()))"],
                               capture_output=True, text=True, check=True).stdout.strip()
        lines = [f"Large checkpoint: torch.save zip, {human(size)}, {count} tensors, "
                 f"page cache warm for every reader", ""]
        ours = run_driver(Path(PYTHON), STAGEGATE_DRIVER, [], [str(path)])[str(path)]
        rows = [("Stagegate scan_path", ours[1], ours[2])]
        for mode in ("default", "mmap"):
            done = subprocess.run([PYTHON, "-c", TORCH_LOAD, str(path), mode], check=True,
                                  capture_output=True, text=True)
            loaded, _ = map(float, done.stdout.split())
            name = "torch.load(weights_only=True" + (", mmap=True)" if mode == "mmap" else ")")
            rows.append((name, loaded, "maps the file; reads data lazily" if mode == "mmap"
                         else "reads every tensor"))
        for tool in TOOLS:
            status, seconds = run_driver(tools_python, DRIVER, [tool], [str(path)])[str(path)]
            rows.append((tool, seconds, status))
        baseline = rows[1][1]
        lines.append(f"{'reader':<44} {'seconds':>9} {'MB/s':>10} {'vs torch.load':>14}  result")
        for name, seconds, note in rows:
            lines.append(f"{name:<44} {seconds:>9.3f} {size / seconds / 1e6:>10.0f} "
                         f"{baseline / seconds:>13.1f}x  {note}")
        return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=2.0)
    parser.add_argument("--skip-large", action="store_true")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    tools_python = ensure_tools()
    from tests.scanner import corpus as corpus_module

    with tempfile.TemporaryDirectory(prefix="scanner-corpus-") as folder:
        corpus = corpus_module.build(Path(folder))
        started = time.perf_counter()
        lines = corpus_table(tools_python, corpus)
    print("\n".join(lines))
    print(f"(corpus scans took {time.perf_counter() - started:.0f} s)\n")
    if not args.skip_large:
        print("\n".join(large_table(tools_python, args.size_gb)))


if __name__ == "__main__":
    main()
