"""`ktapjit run ARGS -e SCRIPT [-- CMD]` in this process (so leaks show in it).

Every event test runs under each engine: conftest.py's autouse `engine`
fixture sets ENGINE, and both helpers here pass it on."""

import io

from ktapjit.cli import main

ENGINE = "interp"


def engine_args() -> list[str]:
    return ["--engine", ENGINE]


def ktapjit(*args: str, script: str) -> tuple[int, str, str]:
    """(status, stdout, stderr); a `--` among `args` starts the traced command."""
    args = list(args)
    cut = args.index("--") if "--" in args else len(args)
    out, err = io.BytesIO(), io.BytesIO()
    status = main(["run", *engine_args(), *args[:cut], "-e", script, *args[cut:]], stdout=out, stderr=err)
    return status, out.getvalue().decode("latin-1"), err.getvalue().decode("latin-1")
