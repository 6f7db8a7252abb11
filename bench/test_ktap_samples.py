"""bench/ktap_samples.py classifies each sample of a ktap checkout: a git
repository made here with one script of each kind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.ktap_samples import Verdict, survey, table

KTAPJIT = str(Path(sys.executable).with_name("ktapjit"))
SAMPLES = {
    "samples/helloworld.kp": 'print("hello world")\n',
    "samples/basic/undeclared.kp": "print(in_softirq())\n",
    "samples/io/no_event.kp": "trace nosuchsys:nosuchevent { }\n",
}


def test_each_sample_is_classified_with_its_first_error_line(tmp_path):
    for name, text in SAMPLES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "samples"], check=True)
    verdicts = survey(str(tmp_path), KTAPJIT)
    assert verdicts == [
        Verdict("basic/undeclared.kp", "compile error", "use of undeclared name 'in_softirq'"),
        Verdict("helloworld.kp", "runs"),
        Verdict("io/no_event.kp", "resolve error", verdicts[2].message),
    ]
    assert "nosuchsys:nosuchevent" in verdicts[2].message
    assert table(verdicts).endswith("\n3 samples: 1 compile error, 1 resolve error, 1 runs\n")
