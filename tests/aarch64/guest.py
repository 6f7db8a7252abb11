"""Run in the arm64 Python under qemu (tests/aarch64/harness.py): many
`ktapjit` command lines in one emulated process, as the conformance test
runs them on the host (ktapjit.cli.main, in-process), so emulated start-up
is paid once.

    guest.py JOBS.json RESULTS.json

JOBS: [{"cwd": DIR, "argv": [...]}]; RESULTS: the machine it ran on and,
per job, {"status", "stdout", "stderr"} (bytes as base64).
"""

import base64
import io
import json
import os
import platform
import sys

from ktapjit.cli import main


def _run(job: dict) -> dict:
    os.chdir(job["cwd"])
    out, err = io.BytesIO(), io.BytesIO()
    status = main(job["argv"], stdout=out, stderr=err)
    return {"status": status, "stdout": base64.b64encode(out.getvalue()).decode(),
            "stderr": base64.b64encode(err.getvalue()).decode()}


def _main() -> None:
    with open(sys.argv[1]) as handle:
        jobs = json.load(handle)
    results = {"machine": platform.machine(), "runs": [_run(job) for job in jobs]}
    with open(sys.argv[2], "w") as handle:
        json.dump(results, handle)


if __name__ == "__main__":
    _main()
