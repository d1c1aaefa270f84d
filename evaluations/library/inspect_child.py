"""The child process that runs one Inspect task (see inspect_tasks.py): reads its request as
JSON on stdin, runs `inspect_ai.eval` with Inspect's Hugging Face provider on the local model
folder, prints {"log": path of the EvalLog JSON} as its last line. Standalone: it is run by path,
imports nothing of Stagegate, and gets an environment without the worker's settings."""

import json
import sys


def main() -> None:
    request = json.loads(sys.stdin.read())
    from inspect_ai import eval as inspect_eval

    logs = inspect_eval(
        request["task"], model="hf/local",
        model_args={"model_path": request["model_dir"], "device": request["device"],
                    "do_sample": False, "trust_remote_code": False},
        log_dir=request["log_dir"], log_format="json", display="none",
        limit=request.get("limit"), max_tokens=request.get("max_tokens"),
        seed=request.get("seed"), fail_on_error=True)
    log = logs[0]
    print(json.dumps({"log": log.location.removeprefix("file://")}))


if __name__ == "__main__":
    main()
