"""`ktapjit run ARGS -e SCRIPT [-- CMD]` in this process (so leaks show in it).

Every event test runs under each engine: conftest.py's autouse `engine`
fixture sets ENGINE, and both helpers here pass it on. The BPF engine
traces live only: under it, a `--replay` of what a live run recorded runs
on the interpreter (`ktapjit run --engine compare --bpf` does the same)."""

import io

from ktapjit.cli import main

ENGINE = "interp"


def engine_args(args=()) -> list[str]:
    """The engine a run with these options runs on."""
    if ENGINE == "bpf" and "--replay" in args:
        return ["--engine", "interp"]
    return ["--engine", ENGINE]


def ktapjit(*args: str, script: str) -> tuple[int, str, str]:
    """(status, stdout, stderr); a `--` among `args` starts the traced command."""
    args = list(args)
    cut = args.index("--") if "--" in args else len(args)
    out, err = io.BytesIO(), io.BytesIO()
    status = main(["run", *engine_args(args[:cut]), *args[:cut], "-e", script, *args[cut:]], stdout=out, stderr=err)
    return status, out.getvalue().decode("latin-1"), err.getvalue().decode("latin-1")
