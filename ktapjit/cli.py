"""The `ktapjit` command line: the one module that ties the packages together.

Every user-facing failure ends here as one clear line and a non-zero status:
2 for usage and compile errors, 1 for runtime errors. A Python traceback is
a bug; set KTAPJIT_DEBUG=1 to see one instead of the one-line report.
"""

from __future__ import annotations

import argparse
import errno
import gc
import io
import os
import shutil
import sys
from contextlib import contextmanager
from typing import BinaryIO, Optional, Sequence

from ktapjit import __version__
from ktapjit.bpf.errors import BpfError
from ktapjit.diag import CompileError, counted
from ktapjit.run_api import Aborted, Host, Limits, RunConfig, monotonic_ns
from ktapjit.semantics.intmath import INT64_MAX  # limits are 64-bit counters in native code
from ktapjit.semantics.limits import DEFAULT_MAX_STRING


EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_MISMATCH = 3  # --engine compare: the engines disagreed
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer killed by it

ENGINES = ("interp", "jit", "bpf", "compare")
TARGETS = ("x86_64", "aarch64")  # jit/codegen.py TARGETS


class UsageError(Exception):
    """Bad command-line usage: reported as `ktapjit: MESSAGE`, status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing and exiting, so main() owns the streams."""

    def error(self, message: str):
        raise UsageError(f"{message} (see '{self.prog} --help')")

    def exit(self, status: int = 0, message: Optional[str] = None):
        raise _ParserExit(status, message)

    def print_help(self, file=None):
        raise _ParserExit(0, self.format_help())

    def print_version(self):
        raise _ParserExit(0, f"ktapjit {__version__}\n")


class _ParserExit(Exception):
    def __init__(self, status: int, message: Optional[str]):
        super().__init__(message)
        self.status = status
        self.message = message


class _VersionAction(argparse.Action):
    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        raise _ParserExit(0, f"ktapjit {__version__}\n")


COMPARED = ("jit", "bpf")  # the engines --engine compare checks against the interpreter


class _EngineAction(argparse.Action):
    """--engine, --jit, --bpf: the last engine named wins, except that
    `compare` takes the engine named beside it, in either order, as the one
    it checks (`--engine compare --bpf`; ns.compared, by default jit)."""

    def __call__(self, parser, namespace, values, option_string=None):
        chosen = values if isinstance(values, str) else self.const
        if chosen == "compare" and namespace.engine in COMPARED:
            namespace.compared = namespace.engine  # the default engine is jit: a plain compare checks it
        elif namespace.engine == "compare" and chosen in COMPARED:
            namespace.compared = chosen
            return
        namespace.engine = chosen


def _positive_int(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    if value > INT64_MAX:
        raise argparse.ArgumentTypeError(f"must be at most {INT64_MAX}, got {value}")
    return value


def _power_of_two(text: str) -> int:
    value = _positive_int(text)
    if value & (value - 1):
        raise argparse.ArgumentTypeError(f"must be a power of two, got {value}")
    return value


def _build_parser(only: Optional[str] = None) -> _Parser:
    """The whole command line, or (`only`) the top level and one command:
    when argv names its command, the other four are never needed, and
    building them is most of argparse's ~3 ms."""
    parser = _Parser(prog="ktapjit", description="Run ktap tracing scripts, JIT-compiled or interpreted.")
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, add_command in _COMMANDS.items():
        if only is None or name == only:
            add_command(commands)
    return parser


def _add_run(commands) -> None:
    run = commands.add_parser("run", help="run a script", description="Run a ktap script.")
    run.add_argument("--engine", choices=ENGINES, default="jit", action=_EngineAction,
                     help="jit (the default): native code; interp: the reference interpreter; "
                          "bpf: probes in the kernel where they may run there (live only); compare: jit "
                          "(with --bpf: bpf) and interp over one stream, checked")
    run.add_argument("--jit", dest="engine", nargs=0, action=_EngineAction, const="jit",
                     help="same as --engine jit")
    run.add_argument("--bpf", dest="engine", nargs=0, action=_EngineAction, const="bpf",
                     help="same as --engine bpf; with --engine compare, compare bpf with interp")
    run.set_defaults(compared="jit")
    _add_limit_options(run)
    run.add_argument("--replay", metavar="PERF_DATA", help="run over a recording (perf.data) instead of live")
    run.add_argument("--record", metavar="PERF_DATA", help="also record the live stream to a perf.data file")
    run.add_argument("-d", "--dry-run", action="store_true",
                     help="resolve every event and probe, print what would be attached, attach nothing")
    run.add_argument("-p", "--pid", type=_positive_int, metavar="PID", help="trace only this process (and its children)")
    run.add_argument("--buffer-pages", type=_power_of_two, default=1024, metavar="N",
                     help="ring buffer pages per CPU, a power of two (default 1024: 4 MiB)")
    run.add_argument("-o", "--output", metavar="FILE", help="write the script's output to FILE")
    run.add_argument("-f", "--format", choices=("text", "json"), default="text",
                     help="text (the default): as the script writes it; json: one JSON object a line "
                          "(docs/output-json.md)")
    run.add_argument("-q", "--quiet", action="store_true", help="no status messages or progress bar on stderr")
    run.add_argument("-v", "--verbose", action="store_true",
                     help="live only: every 2 s, the events/s read and the events lost, on stderr, "
                          "and a summary at the end (not with -q or --replay)")
    run.add_argument("-e", dest="program", metavar="PROGRAM", help="run PROGRAM given on the command line")
    run.add_argument("--metrics", metavar="[ADDR:]PORT",
                     help="serve the --export globals at http://ADDR:PORT/metrics for Prometheus while tracing "
                          "(ADDR 127.0.0.1 by default; port 0 picks a free one)")
    run.add_argument("--export", dest="exports", action="append", default=[], metavar="NAME[:TYPE]",
                     help="with --metrics: export global NAME as a counter (default), gauge, histogram "
                          "(hist/lhist aggregations) or summary (stats aggregations)")
    run.add_argument("script", nargs="?", metavar="SCRIPT", help="the script file")
    run.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS", help="script arguments (arg[1], ...)")


def _add_record(commands) -> None:
    rec = commands.add_parser("record", help="record events to perf.data",
                              description="Record events to a perf.data file that perf script and --replay read.")
    rec.add_argument("-e", "--event", dest="events", action="append", required=True, metavar="EVENTDEF",
                     help="events to record, e.g. 'sched:*' or 'syscalls:sys_enter_read /fd == 0/'; repeatable")
    rec.add_argument("-o", "--output", required=True, metavar="FILE", help="the perf.data file to write")
    rec.add_argument("-p", "--pid", type=_positive_int, metavar="PID", help="record only this process")
    rec.add_argument("-q", "--quiet", action="store_true", help="no status messages on stderr")
    rec.add_argument("--buffer-pages", type=_power_of_two, default=1024, metavar="N",
                     help="ring buffer pages per CPU, a power of two (default 1024)")


def _add_list(commands) -> None:
    lister = commands.add_parser("list", help="list tracepoints", description="List the kernel's tracepoints.")
    lister.add_argument("pattern", nargs="?", metavar="GLOB", help="e.g. 'sched:*' or '*open*'")
    lister.add_argument("-v", "--verbose", action="store_true", help="also show each event's fields")


def _add_ir(commands) -> None:
    ir = commands.add_parser("ir", help="print a script's SSA IR", description="Print the SSA IR of a script.")
    ir.add_argument("-O0", dest="optimize", action="store_false", help="skip the optional passes")
    ir.add_argument("--dump-after", metavar="STEP",
                    help="print what STEP made instead of the final IR: the AST (parse, resolve), the IR, "
                         "LLVM IR (lower, optimise) or assembly (codegen), for this machine")
    ir.add_argument("-e", dest="program", metavar="PROGRAM", help="compile PROGRAM given on the command line")
    ir.add_argument("script", nargs="?", metavar="SCRIPT")
    _add_limit_options(ir)


def _add_asm(commands) -> None:
    asm = commands.add_parser("asm", help="print a script's native code",
                              description="Compile a script with the JIT and print its assembly, "
                                          "or write an object file with -o.")
    asm.add_argument("--target", choices=TARGETS, default=None,
                     help="the machine to generate code for (default: this one)")
    asm.add_argument("-o", "--output", metavar="FILE", help="write an ELF object file instead of assembly")
    asm.add_argument("--llvm-ir", action="store_true",
                     help="print the LLVM IR before optimisation instead (as `ktapjit ir --dump-after lower`)")
    asm.add_argument("-e", dest="program", metavar="PROGRAM", help="compile PROGRAM given on the command line")
    asm.add_argument("script", nargs="?", metavar="SCRIPT")
    _add_limit_options(asm)  # limits are read at run time; --debug verify still applies


def _add_plan(commands) -> None:
    plan = commands.add_parser("plan", help="say where each probe runs: kernel or user space",
                               description="Print, for each probe and timer, whether --engine bpf runs it in the "
                                           "kernel or in user space, and for user space why: the construct "
                                           "and its position (docs/bpf.md).")
    plan.add_argument("-e", dest="program", metavar="PROGRAM", help="plan PROGRAM given on the command line")
    plan.add_argument("script", nargs="?", metavar="SCRIPT")
    _add_limit_options(plan)  # --max-loop and --max-depth decide some placements


def _add_ps(commands) -> None:
    ps = commands.add_parser("ps", help="list the ktapjit programs running in the kernel",
                             description="List the BPF programs ktapjit sessions have loaded, by any "
                                         "process: pid, start time, program, command line.")
    ps.add_argument("-v", "--verbose", action="store_true", help="also show each session's script source")


# In the order `ktapjit --help` lists them.
def _add_compile(commands) -> None:
    compile_ = commands.add_parser("compile", help="compile a script into a bundle for `ktapjit run FILE`",
                                   description="Compile a script into one file (a bundle) holding its native "
                                               "code for the target, the runtime, its source and command line "
                                               "and the versions used; `ktapjit run FILE` runs it without "
                                               "LLVM, `ktapjit source FILE` prints the script.")
    compile_.add_argument("--target", choices=TARGETS, default=None,
                          help="the machine to generate code for (default: this one)")
    compile_.add_argument("-o", "--output", metavar="FILE", required=True, help="the bundle to write")
    compile_.add_argument("-e", dest="program", metavar="PROGRAM", help="compile PROGRAM given on the command line")
    compile_.add_argument("script", nargs="?", metavar="SCRIPT")
    _add_limit_options(compile_)  # --max-string folds constants: a run must give the same


def _add_source(commands) -> None:
    source = commands.add_parser("source", help="print the script a bundle holds",
                                 description="Print the script a bundle (from `ktapjit compile`) will run.")
    source.add_argument("--manifest", action="store_true",
                        help="print the bundle's manifest instead: target, versions, command line")
    source.add_argument("bundle", metavar="FILE")


_COMMANDS = {"run": _add_run, "record": _add_record, "list": _add_list, "ir": _add_ir, "asm": _add_asm,
             "plan": _add_plan, "ps": _add_ps, "compile": _add_compile, "source": _add_source}


def _add_limit_options(parser: argparse.ArgumentParser) -> None:
    defaults = Limits()
    parser.add_argument("--max-loop", type=_positive_int, default=defaults.max_loop, metavar="N",
                        help=f"loop back-edges per call (default {defaults.max_loop})")
    parser.add_argument("--max-depth", type=_positive_int, default=defaults.max_depth, metavar="N",
                        help=f"call depth (default {defaults.max_depth})")
    parser.add_argument("--max-table", type=_positive_int, default=defaults.max_table, metavar="N",
                        help=f"entries per table (default {defaults.max_table})")
    parser.add_argument("--max-string", type=_positive_int, default=defaults.max_string, metavar="N",
                        help=f"bytes per string made by .. or stringof (default {defaults.max_string})")
    parser.add_argument("--debug", choices=("verify",), action="append", default=[],
                        help="verify: check the IR after every pass")
    parser.add_argument("--time-steps", action="store_true",
                        help="print how long each compile step took, in ms, on stderr")


def _limits(ns) -> Limits:
    return Limits(max_loop=ns.max_loop, max_depth=ns.max_depth, max_table=ns.max_table, max_string=ns.max_string)


# ------------------------------------------------------------ entry points


def main(argv: Optional[Sequence[str]] = None, stdout: Optional[BinaryIO] = None,
         stderr: Optional[BinaryIO] = None) -> int:
    """Run the CLI; returns the exit status and never raises (tests call this in-process)."""
    out = _whole_writes(stdout if stdout is not None else sys.stdout.buffer)
    err = stderr if stderr is not None else sys.stderr.buffer
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(argv, out, err)
    except UsageError as exc:
        _say(err, f"ktapjit: {exc}")
        return EXIT_USAGE
    except _ParserExit as exc:
        if exc.message:
            (out if exc.status == 0 else err).write(exc.message.encode())
        return exc.status
    except CompileError as exc:
        _say(err, exc.render())
        return EXIT_USAGE
    except BpfError as exc:  # bpf(2) refused: no permission, a verifier rejection, a missing feature
        _say(err, f"ktapjit: {exc}")
        return EXIT_RUNTIME
    except KeyboardInterrupt:  # before the script ran (compiling, binding)
        _say(err, "ktapjit: interrupted")
        return EXIT_INTERRUPTED
    except Aborted:  # a second Ctrl-C while tracing
        _say(err, "ktapjit: interrupted again: stopped at once, without trace_end")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `ktapjit run ... | head`: the reader left; so do we, quietly
        _silence(out)
        return EXIT_BROKEN_PIPE
    except OSError as exc:
        _say(err, f"ktapjit: cannot write output: {exc.strerror or exc}")
        return EXIT_RUNTIME
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        if os.environ.get("KTAPJIT_DEBUG"):
            raise
        _say(err, f"ktapjit: internal error: {type(exc).__name__}: {exc} (set KTAPJIT_DEBUG=1 for details)")
        return EXIT_INTERNAL
    finally:
        _flush(out)
        _flush(err)


class _WholeWriter:
    """A raw stream whose write() writes all it is given."""

    def __init__(self, raw):
        self.raw = raw

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            n = self.raw.write(view[done:])
            if n is None:  # a non-blocking descriptor that is full
                raise BlockingIOError(errno.EAGAIN, "output would block", done)
            done += n
        return done

    def __getattr__(self, name):
        return getattr(self.raw, name)


def _whole_writes(stream):
    """Under PYTHONUNBUFFERED=1 (python -u) sys.stdout.buffer is a raw
    FileIO, and a raw write() may take only part of the bytes: a writer
    blocked on a full pipe and interrupted by a signal (Ctrl-C) returns
    what it wrote so far. The JIT hands over its output in large pieces, so
    the rest was lost; this writes it all."""
    return _WholeWriter(stream) if isinstance(stream, io.RawIOBase) else stream


def _silence(stream) -> None:
    """After EPIPE, further writes (the final flush) would fail again."""
    try:
        stream.write = lambda data: len(data)
    except (AttributeError, TypeError):
        pass


def _flush(stream) -> None:
    try:
        stream.flush()
    except (OSError, ValueError):
        pass


def _say(stream: BinaryIO, text: str) -> None:
    stream.write(text.encode("utf-8", "replace") + b"\n")


def _dispatch(argv: list[str], out: BinaryIO, err: BinaryIO) -> int:
    # Anything but a command name first (an option, a typo, nothing) needs the
    # whole parser, for its messages and --help.
    parser = _build_parser(argv[0] if argv and argv[0] in _COMMANDS else None)
    argv, command = _split_command(argv)
    ns = parser.parse_args(argv)
    ns.command_argv = command
    ns.raw_argv = [*argv, *(["--", *command] if command else [])]  # an emulated bundle run repeats it
    ns.argv = ["ktapjit", *ns.raw_argv]  # what `ktapjit ps` shows
    if ns.command is None:
        raise _ParserExit(EXIT_USAGE, parser.format_usage())
    if command and ns.command not in ("run", "record"):
        raise UsageError(f"'-- CMD' is only for 'ktapjit run', not '{ns.command}'")
    if ns.command == "run":
        return _cmd_run(ns, out, err)
    if ns.command == "ir":
        return _cmd_ir(ns, out, err)
    if ns.command == "asm":
        return _cmd_asm(ns, out, err)
    if ns.command == "list":
        return _cmd_list(ns, out)
    if ns.command == "plan":
        return _cmd_plan(ns, out)
    if ns.command == "record":
        return _cmd_record(ns, err)
    if ns.command == "ps":
        return _cmd_ps(ns, out)
    if ns.command == "compile":
        return _cmd_compile(ns, err)
    if ns.command == "source":
        return _cmd_source(ns, out)
    raise UsageError(f"unknown command '{ns.command}'")


def _load_source(ns) -> tuple[str, bytes]:
    if ns.program is not None:
        if ns.script is not None:
            # With -e, everything after the options is a script argument.
            ns.args = [ns.script, *getattr(ns, "args", [])]
        return "-e", ns.program.encode("utf-8", "surrogateescape")
    if ns.script is None:
        raise UsageError("no script given: pass SCRIPT or -e PROGRAM")
    try:
        with open(ns.script, "rb") as handle:
            return ns.script, handle.read()
    except OSError as exc:
        raise UsageError(f"cannot read script '{ns.script}': {exc.strerror or exc}") from None


def _compile(path: str, source: bytes, limits: Limits, ns=None, err: Optional[BinaryIO] = None, **steps):
    """The script through compile_script; `steps` are its options (until,
    optimize, dump_after, target, ...). With `ns`, --debug verify and
    --time-steps apply (the step times go to `err`)."""
    from ktapjit.compiler import compile_script, format_timings

    if ns is not None:
        steps.setdefault("verify", "verify" in ns.debug)
    unit = compile_script(source, path, limits=limits, **steps)
    if ns is not None and ns.time_steps and err is not None:
        err.write(format_timings(unit).encode())
    return unit


def _cmd_ir(ns, out: BinaryIO, err: BinaryIO) -> int:
    from ktapjit.compiler import STEP_NAMES
    from ktapjit.ir.printer import format_module

    path, source = _load_source(ns)
    if ns.dump_after is None:
        unit = _compile(path, source, _limits(ns), ns, err, optimize=ns.optimize)
        out.write(format_module(unit.module).encode())
        return EXIT_OK
    if ns.dump_after not in STEP_NAMES:
        raise UsageError(f"unknown pass '{ns.dump_after}'; passes: {', '.join(STEP_NAMES)}")
    dump = io.StringIO()
    _compile(path, source, _limits(ns), ns, err, verify=True, optimize=ns.optimize, until=ns.dump_after,
             dump_after=ns.dump_after, dump_to=dump)
    out.write(dump.getvalue().encode())
    return EXIT_OK


def _cmd_plan(ns, out: BinaryIO) -> int:
    from ktapjit.bpf.placement import place_module

    path, source = _load_source(ns)
    limits = _limits(ns)
    module = _compile(path, source, limits, verify="verify" in ns.debug).module
    for placement in place_module(module, limits):
        out.write(placement.render().encode("utf-8", "surrogateescape") + b"\n")
    return EXIT_OK


def _cmd_asm(ns, out: BinaryIO, err: BinaryIO) -> int:
    from ktapjit.compiler import shown_after

    path, source = _load_source(ns)
    # --llvm-ir is --dump-after lower, without the header: the text LLVM reads.
    until = "lower" if ns.llvm_ir else "codegen"
    unit = _compile(path, source, _limits(ns), ns, err, target=ns.target, assembly=ns.output is None,
                    until=until)
    if ns.llvm_ir or ns.output is None:
        out.write(shown_after(unit, until).encode())
        return EXIT_OK
    try:
        with open(ns.output, "wb") as handle:
            handle.write(unit.machine_code)
    except OSError as exc:
        raise UsageError(f"cannot write object file '{ns.output}': {exc.strerror or exc}") from None
    return EXIT_OK


def _cmd_record(ns, err: BinaryIO) -> int:
    from ktapjit.events.records.perfdata import PerfDataWriteError
    from ktapjit.events.errors import EventsError
    from ktapjit.tracing.record import RecordingDriver, recording_script
    from ktapjit.tracing.session import live_session

    _check_target(ns)
    try:
        source = recording_script(ns.events)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    module = _compile("-e", source, Limits()).module
    session = _bound_session(lambda: live_session(module, _live_options(ns, ns.output, err)), source)
    driver = RecordingDriver(session.start_ns)
    failure = None
    try:
        session.drive(driver)
    except PerfDataWriteError as exc:  # a full disk: what was written stays replayable
        failure = exc
    except (EventsError, OSError) as exc:
        raise UsageError(str(exc)) from None
    finally:
        _close_session(session, err)
    _say_losses(err, driver.lost, driver.unprocessed)
    if failure is not None:
        _say(err, f"ktapjit: {failure}")
    if not ns.quiet:
        _say(err, f"Recorded {counted(driver.samples, 'sample')} to {ns.output}")
    return EXIT_OK if failure is None else EXIT_RUNTIME


def _say_losses(err: BinaryIO, lost: int, unprocessed: int) -> None:
    """Events that never ran: dropped by the kernel, or read and left when a stop's deadline passed."""
    if lost:
        _say(err, f"{counted(lost, 'event')} lost")
    if unprocessed:
        _say(err, f"{counted(unprocessed, 'event')} read but not processed (stopped)")


def _live_options(ns, record_path: Optional[str], err: BinaryIO):
    from ktapjit.tracing.live import LiveOptions

    return LiveOptions(
        pages=ns.buffer_pages, pid=ns.pid or -1, command=ns.command_argv, record_path=record_path,
        status=(lambda text: None) if ns.quiet else (lambda text: _say(err, text)),
        warn=lambda text: _say(err, f"ktapjit: {text}"),
        rates=(lambda text: _say(err, f"ktapjit: {text}")) if getattr(ns, "verbose", False) else None,
        between_rounds=ns.exporter.tick if getattr(ns, "exporter", None) is not None else lambda: None,
        companions=_attach_companions, max_string=getattr(ns, "max_string", DEFAULT_MAX_STRING),
    )


def _attach_companions(reads, outputs):
    """The companion programs of a live session (tracing/companion.py), in the kernel."""
    from ktapjit.bpf.companion import attach_companions
    from ktapjit.bpf.errors import BpfError
    from ktapjit.events.errors import EventsError

    try:
        return attach_companions(reads, outputs)
    except BpfError as exc:
        raise EventsError(f"cannot read memory at event time: {exc}") from None


def _guard_events(action):
    """Event-layer failures before any script code ran are usage errors (status 2)."""
    from ktapjit.events.errors import EventsError

    try:
        return action()
    except (EventsError, OSError) as exc:
        raise UsageError(str(exc)) from None


def _bound_session(open_session, source: bytes):
    try:
        return _guard_events(open_session)
    except CompileError as exc:  # binding errors point into the script
        exc.source = source
        raise


def _cmd_ps(ns, out: BinaryIO) -> int:
    from ktapjit.bpf.loaded import loaded_sessions, render

    out.write("".join(line + "\n" for line in render(loaded_sessions(), ns.verbose)).encode())
    return EXIT_OK


def _cmd_list(ns, out: BinaryIO) -> int:
    from ktapjit.tracing.listing import listing

    lines = _guard_events(lambda: list(listing(ns.pattern, ns.verbose)))
    if not lines:
        raise UsageError(f"no tracepoint matches '{ns.pattern}'")
    out.write("".join(line + "\n" for line in lines).encode())
    return EXIT_OK


def _cmd_run(ns, out: BinaryIO, err: BinaryIO) -> int:
    if ns.program is None and ns.script is not None and _is_bundle(ns.script):
        opened = _open_bundle(ns, out, err)
        if isinstance(opened, int):  # run elsewhere: under emulation
            return opened
        path, source, module = opened
    else:
        path, source = _load_source(ns)
        _check_mode_options(ns)
        with _no_collection():  # the JIT's cache may hold the module (jit/script_cache.py)
            module = _compile(path, source, _limits(ns), ns, err,
                              cached=ns.engine == "jit" and not ns.time_steps).module
    if ns.engine == "compare" and (ns.metrics is not None or ns.exports):
        raise UsageError("--metrics needs one engine: --engine interp or jit, not compare")
    if ns.dry_run:
        return _cmd_dry_run(ns, module, source, out, err)
    if ns.engine == "compare":
        return _cmd_compare(ns, module, path, source, out, err)
    sink = None
    ns.exporter = _open_exporter(ns, module, err)
    try:
        sink = _open_output(ns, out)
        progress = _replay_progress(ns, err)
        shown = sink
        if ns.format == "json":
            from ktapjit.output_json import JsonOutput

            shown = JsonOutput(sink)
        if progress is not None and _isatty(sink):
            from ktapjit.tracing.progress import TerminalOutput

            shown = TerminalOutput(sink, progress)  # the bar makes way for the script's lines
        opener = lambda: _open_session(ns, module, source, err, progress)  # noqa: E731
        wrap = None if ns.exporter is None else lambda run: ns.exporter.attach(run, module.global_names)
        engine = _bpf_engine(ns, source, err) if ns.engine == "bpf" else ns.engine
        return _run_engine(engine, ns, module, path, opener, shown, err, wrap)
    finally:
        if ns.exporter is not None:
            ns.exporter.server.close()
        if sink is not None and sink is not out:
            sink.close()


def _cmd_dry_run(ns, module, source: bytes, out: BinaryIO, err: BinaryIO) -> int:
    """-d: the probes resolved as the run resolves them (so its errors are
    the run's), the plan printed, nothing attached and CMD not started."""
    from ktapjit.tracing.dry_run import dry_run_objects, dry_run_text, live_dry_run, replay_dry_run

    _exporter_wanted(ns, module)  # its errors are the run's; no port is bound
    sink = _open_output(ns, out)
    try:
        _check_traceable(ns, module)
        if ns.replay is not None:
            dry, warnings = _bound_session(lambda: replay_dry_run(ns.replay, module, ns.engine), source)
            for warning in warnings:
                _say(err, f"ktapjit: warning: {warning}")
        else:
            dry = _bound_session(lambda: live_dry_run(module, ns.engine, ns.pid or -1, ns.command_argv), source)
        if ns.engine == "bpf" or (ns.engine == "compare" and ns.compared == "bpf"):
            _place_dry_run(dry, module, _limits(ns), recorded=ns.engine == "compare" or ns.record is not None)
            dry.engine = "bpf" if ns.engine == "bpf" else "compare --bpf"
        if ns.format == "json":
            import json

            objects = [*dry_run_objects(dry), {"v": 1, "type": "end", "status": EXIT_OK}]
            sink.write(b"".join(json.dumps(o, separators=(",", ":")).encode() + b"\n" for o in objects))
        else:
            sink.write(dry_run_text(dry).encode("utf-8", "surrogateescape"))
    finally:
        if sink is not out:
            sink.close()
    return EXIT_OK


def _place_dry_run(dry, module, limits: Limits, recorded: bool = False) -> None:
    """--engine bpf: where each probe and timer runs, as `ktapjit plan` says
    (`recorded`: for a run that records its stream)."""
    from ktapjit.bpf.placement import place_module

    placed = {id(p.target): p for p in place_module(module, limits, recorded=recorded)}
    for planned in (*dry.probes, *dry.timers):
        placement = placed[id(planned.info)]
        planned.where = placement.where
        planned.reasons = tuple(reason.render() for reason in placement.reasons)


def _bpf_engine(ns, source: bytes, err: BinaryIO):
    from ktapjit.bpf.engine import BpfEngine

    return BpfEngine(source, ns.argv, ns.verbose, lambda text: _say(err, f"ktapjit: {text}"))


def _open_exporter(ns, module, err: BinaryIO):
    """The --metrics server, bound before anything is traced, or None."""
    wanted = _exporter_wanted(ns, module)
    if wanted is None:
        return None
    from ktapjit.metrics.exporter import open_exporter

    address, exports = wanted
    try:
        exporter = open_exporter(address, exports)
    except OSError as exc:
        raise UsageError(f"--metrics {ns.metrics}: cannot serve there: {exc.strerror or exc}") from None
    if not ns.quiet:
        _say(err, f"Serving metrics at {exporter.server.url}")
    return exporter


def _exporter_wanted(ns, module):
    """--metrics and --export checked (a dry run stops here): (address,
    exports), or None without --metrics."""
    if ns.metrics is None:
        if ns.exports:
            raise UsageError("--export needs --metrics [ADDR:]PORT")
        return None
    if ns.replay is not None:
        raise UsageError("--metrics serves a live trace and cannot be combined with --replay")
    from ktapjit.metrics.exporter import ExportError, check_exports, parse_export
    from ktapjit.metrics.server import AddressError, parse_address

    try:
        address = parse_address(ns.metrics)
        exports = [parse_export(text) for text in ns.exports]
        check_exports(exports, module.global_names)
    except (AddressError, ExportError) as exc:
        raise UsageError(str(exc)) from None
    if not exports:
        raise UsageError("--metrics needs at least one --export NAME[:TYPE]")
    return address, exports


_own_process = False  # set by entry(): the process is this command, nothing else lives in it


@contextmanager
def _no_collection():
    """Cyclic garbage collection off for a start-up step. Compiling, binding
    and loading allocate tens of thousands of objects that live for the
    whole run, and almost no cyclic garbage (a few dozen objects): collecting
    would only scan them again and again (docs/performance-notes.md,
    Start-up). The command's own process then freezes them, so that no later
    collection scans them either, as a live trace does (tracing/live.py); an
    in-process caller's heap is left alone. The script's code runs with
    collection on."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if _own_process:
            gc.freeze()
        if enabled:
            gc.enable()


def _run_engine(engine: str, ns, module, path: str, open_session, sink: BinaryIO, err: BinaryIO,
                wrap=None, notices: Optional[BinaryIO] = None, start_ns: Optional[int] = None) -> int:
    """One engine over the session `open_session()` gives (None: no events;
    the stream then starts at `start_ns`, by default now). The script's
    errors go to `err`; the session's own lines (events lost, a dynamic event
    left behind) to `notices`, by default `err` too."""
    notices = err if notices is None else notices
    with _no_collection():
        session = open_session()
    try:
        if session is not None:
            start_ns = session.start_ns
        elif start_ns is None:
            start_ns = monotonic_ns()
        host = session.host if session is not None else Host.local()
        config = RunConfig(limits=_limits(ns), script_args=(path, *ns.args), start_time_ns=start_ns, host=host,
                           structured_output=ns.format == "json")
        return _execute(engine, module, config, session, sink, err, wrap, notices,
                        native=getattr(ns, "bundle_engine", None))
    finally:
        _close_session(session, notices)


def _cmd_compare(ns, module, path: str, source: bytes, out: BinaryIO, err: BinaryIO) -> int:
    """The compared engine (ns.compared: the JIT, or with --bpf the BPF
    engine) and the interpreter over one stream; the compared engine's
    output is the output. A live stream is recorded while the compared
    engine runs on it, and the recording replayed through the interpreter.
    The BPF engine's programs keep every sample while the stream is
    recorded, so the recording holds the events they ran on too.

    What is compared is what the script made: stdout, its errors, its exit
    status. The session's own lines (the status line, events lost) describe
    the stream, not the script; a replay has no status line and may count
    loss otherwise, so they are not compared: the compared engine's trial,
    the one that traces live, shows them to the user as they happen, once."""
    import tempfile

    from ktapjit.compare import TimedRun, Trial, verdict

    live = ns.replay is None and bool(module.probes or module.timers)
    compared = ns.compared
    # Without events, each trial would take its own start: both take this one.
    start_ns = monotonic_ns()
    with tempfile.TemporaryDirectory(prefix="ktapjit-compare-") as scratch:
        if live and ns.record is None:
            ns.record = os.path.join(scratch, "stream.data")
        trials = []
        for engine in (compared, "interp"):
            trial = Trial(engine)

            def wrap(run, trial=trial):
                timed = TimedRun(run)
                trial.timed.append(timed)
                return timed

            if engine == "interp" and live:
                ns.replay, ns.record, ns.pid, ns.command_argv = ns.record, None, None, []
            trial_out, trial_err = io.BytesIO(), io.BytesIO()
            notices = err if engine == compared else io.BytesIO()  # the replay's are dropped
            runner = _bpf_engine(ns, source, err) if engine == "bpf" else engine
            trial.status = _run_engine(runner, ns, module, path,
                                       lambda: _open_session(ns, module, source, notices,
                                                             _replay_progress(ns, err)),
                                       _trial_output(ns, trial_out), trial_err, wrap, notices, start_ns)
            trial.stdout, trial.stderr = trial_out.getvalue(), trial_err.getvalue()
            trials.append(trial)
    candidate, interp = trials
    sink = _open_output(ns, out)
    try:
        sink.write(candidate.stdout)
    finally:
        if sink is not out:
            sink.close()
    err.write(candidate.stderr)
    same, lines = verdict(interp, candidate)
    for line in lines:
        _say(err, line)
    return candidate.status if same else EXIT_MISMATCH


def _trial_output(ns, stream: BinaryIO):
    """Where a compare trial's output goes: with -f json its error and end
    objects are output too, and so compared; events lost stay the session's
    lines on stderr, shown once and not compared, as in text."""
    if ns.format != "json":
        return stream
    from ktapjit.output_json import JsonOutput

    return JsonOutput(stream, with_losses=False)


def _close_session(session, err: BinaryIO) -> None:
    """Remove the session's dynamic events (uprobes...), whatever the exit path."""
    for problem in (session.close() if session is not None else []):
        _say(err, f"ktapjit: {problem}")


def _split_command(args: list[str]) -> tuple[list[str], list[str]]:
    """`... -- CMD ARGS`: split off the command to trace before argparse, which
    would swallow a `--` right after SCRIPT."""
    if "--" in args:
        cut = args.index("--")
        return args[:cut], args[cut + 1:]
    return args, []


def _check_mode_options(ns) -> None:
    if ns.verbose and ns.quiet:
        raise UsageError("-v (rates on stderr) and -q (nothing on stderr) contradict each other: give one")
    if ns.engine == "bpf" and ns.replay is not None:
        raise UsageError("the BPF engine needs live events: --engine bpf cannot run --replay")
    if ns.engine == "compare" and ns.compared == "bpf" and ns.replay is not None:
        raise UsageError("the BPF engine needs live events: --engine compare --bpf cannot run --replay")
    if ns.engine == "bpf" and ns.metrics is not None:
        raise UsageError("--metrics needs --engine interp or jit: the BPF engine's tables are in the kernel while it traces")
    if ns.verbose and ns.replay is not None:
        raise UsageError("-v reports a live trace's rates: a replay has none (its progress bar shows on a terminal)")
    if ns.replay is not None:
        for flag, given in (("--record", ns.record), ("-p", ns.pid), ("-- CMD", ns.command_argv)):
            if given:
                raise UsageError(f"{flag} traces live and cannot be combined with --replay")
    if ns.replay is not None and ns.output is not None and _same_file(ns.replay, ns.output):
        raise UsageError(f"-o {ns.output} would overwrite the recording being replayed")
    if ns.record is not None:
        folder = os.path.dirname(os.path.abspath(ns.record))
        if not os.access(folder, os.W_OK):
            raise UsageError(f"cannot write recording '{ns.record}': {folder} is not a writable directory")
    _check_target(ns)


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _check_target(ns) -> None:
    """-p PID and -- CMD are checked before anything runs."""
    if ns.pid is not None and ns.command_argv:
        raise UsageError("give either -p PID or -- CMD, not both")
    if ns.pid is not None:
        try:
            os.kill(ns.pid, 0)
        except ProcessLookupError:
            raise UsageError(f"no process with pid {ns.pid}") from None
        except PermissionError:
            pass  # it exists; perf_event_open will say whether we may trace it
    if ns.command_argv and shutil.which(ns.command_argv[0]) is None:
        raise UsageError(f"cannot run '{ns.command_argv[0]}': command not found")


def _replay_progress(ns, err: BinaryIO):
    """The replay's progress bar, or None: the one place that decides whether
    people get one (it shows only once the replay has run ~2 s). Not with
    -f json: its output is for programs."""
    if ns.replay is None or ns.quiet or ns.format == "json" or not _isatty(err):
        return None
    from ktapjit.tracing.progress import ReplayProgress

    return ReplayProgress(err)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no such method; a closed stream
        return False


def _open_session(ns, module, source: bytes, err: BinaryIO, progress=None):
    if not _check_traceable(ns, module):
        return None  # and the tracing machinery is never imported: start-up stays short
    from ktapjit.tracing.session import live_session, replay_session

    if ns.replay is not None:
        session = _bound_session(lambda: replay_session(ns.replay, module, progress), source)
        for warning in session.warnings:
            _say(err, f"ktapjit: warning: {warning}")
        return session
    return _bound_session(lambda: live_session(module, _live_options(ns, ns.record, err)), source)


def _check_traceable(ns, module) -> bool:
    """Whether the run has a stream: a replay, or probes or timers to trace live."""
    if ns.replay is None and not (module.probes or module.timers):
        if ns.record or ns.pid or ns.command_argv:
            raise UsageError("this script has no probes or timers: there is nothing to trace")
        return False
    return True


def _open_output(ns, out: BinaryIO) -> BinaryIO:
    if ns.output is None:
        return out
    try:
        return open(ns.output, "wb")
    except OSError as exc:
        raise UsageError(f"cannot write output file '{ns.output}': {exc.strerror or exc}") from None


def _report(faults, sink: BinaryIO, err: BinaryIO) -> None:
    """Runtime errors, in order with the output before them (so 2>&1 reads
    right); with -f json, error objects in the output."""
    if faults:
        sink.flush()
    for fault in faults:
        if _is_json(sink):
            sink.error(fault)
        else:
            _say(err, fault.render())


def _is_json(sink) -> bool:
    """Whether the run writes -f json; a text run never imports output_json."""
    module = sys.modules.get("ktapjit.output_json")
    return module is not None and isinstance(sink, module.JsonOutput)


FALL_BACK = "to run without the JIT: --engine interp"


def _load(engine_name: str, module, config: RunConfig, sink: BinaryIO, native=None):
    """The engine's run, before any script code ran. A JIT that cannot run
    here (no C compiler, no cache directory, no llvmlite, native code that
    will not build or load) is the machine's problem: one line that says why
    and how to do without it, exit 2. Never a quiet switch to the
    interpreter: it is some 100 times slower on events, and the user would
    not know why."""
    if not isinstance(engine_name, str):  # an engine made for this run (the BPF engine)
        return engine_name.load(module, config, _writer(sink))
    if engine_name != "jit":
        from ktapjit.interp.engine import InterpEngine

        return InterpEngine().load(module, config, _writer(sink))
    if native is not None:  # a bundle's code (bundle/load.py): nothing to compile
        return native.load(module, config, _writer(sink))
    from ktapjit.jit.codegen import CodegenError
    from ktapjit.jit.rtlib import RuntimeBuildError

    try:
        from ktapjit.jit.engine import JitEngine  # lowering imports llvmlite

        return JitEngine().load(module, config, _writer(sink))
    except (RuntimeBuildError, CodegenError) as exc:
        raise UsageError(f"{str(exc).removeprefix('ktapjit: ')}; {FALL_BACK}") from None
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("llvmlite"):
            raise
        raise UsageError(f"the JIT needs llvmlite, which is not installed (pip install llvmlite); "
                         f"{FALL_BACK}") from None
    except OSError as exc:  # dlopen refused the native code (a noexec cache), no scratch space
        raise UsageError(f"the JIT cannot run here: {exc.strerror or exc}; {FALL_BACK}") from None


def _writer(sink):
    """What an engine hands its output to: bytes, or (-f json) output items."""
    return sink.items if _is_json(sink) else sink.write


def _execute(engine_name: str, module, config: RunConfig, session, sink: BinaryIO, err: BinaryIO,
             wrap, notices: BinaryIO, native=None) -> int:
    with _no_collection():
        run = _load(engine_name, module, config, sink, native)
    if wrap is not None:
        run = wrap(run)
    outcome = None
    try:
        if run.start() and session is not None:
            from ktapjit.tracing.session import drive_run

            outcome = drive_run(session, run, module, config.limits.max_table, config.limits.max_string)
    except KeyboardInterrupt:
        pass  # Ctrl-C during the top level: like at any other time, trace_end runs
    if outcome is not None and _is_json(sink) and sink.with_losses:
        sink.lost(outcome.lost, outcome.unprocessed)
    elif outcome is not None:
        _say_losses(notices, outcome.lost, outcome.unprocessed)
    # An error is reported when it happens: before trace_end runs (LANGUAGE.md).
    reported = len(run.errors)
    _report(run.errors, sink, err)
    result = run.finish(outcome.end_ns if outcome else None)
    _report(result.errors[reported:], sink, err)
    status = result.status
    if outcome is not None and outcome.stream_error is not None:
        if _is_json(sink):
            sink.stream_error(str(outcome.stream_error))
        else:
            _say(err, f"ktapjit: {outcome.stream_error}")
        status = EXIT_RUNTIME
    if _is_json(sink):
        sink.end(status)
    return status


# ------------------------------------------------------------ bundles


def _cmd_compile(ns, err: BinaryIO) -> int:
    from ktapjit.bundle.build import compile_bundle
    from ktapjit.bundle.format import BundleError, write
    from ktapjit.jit.codegen import host_target

    path, source = _load_source(ns)
    try:
        bundle = compile_bundle(source, path, target=ns.target or host_target(), limits=_limits(ns),
                                argv=["ktapjit", *ns.raw_argv])
        write(ns.output, bundle)
    except BundleError as exc:
        raise UsageError(str(exc)) from None
    return EXIT_OK


def _cmd_source(ns, out: BinaryIO) -> int:
    import json

    from ktapjit.bundle.format import BundleError, read

    try:
        bundle = read(ns.bundle)
    except BundleError as exc:
        raise UsageError(str(exc)) from None
    if ns.manifest:
        out.write(json.dumps(bundle.manifest, indent=1, sort_keys=True).encode() + b"\n")
    else:
        out.write(bundle.source)
    return EXIT_OK


def _is_bundle(path: str) -> bool:
    from ktapjit.bundle.header import is_bundle  # not format.py: a script's run needs no zipfile

    return is_bundle(path)


def _bundle_options(ns) -> None:
    """`ktapjit run FILE [OPTIONS] [ARGS]`: run's options may also follow a
    bundle (the first word after them starts the script's arguments)."""
    parser = _build_parser("run")
    defaults, after = vars(parser.parse_args(["run"])), parser.parse_args(["run", *ns.args])
    for name, value in vars(after).items():
        if name not in ("script", "args") and value != defaults[name]:
            before = getattr(ns, name)
            setattr(ns, name, before + value if isinstance(value, list) else value)
    ns.args = [] if after.script is None else [after.script, *after.args]


def _open_bundle(ns, out: BinaryIO, err: BinaryIO):
    """The bundle `ns.script` checked, its code loaded for the JIT runs
    (ns.bundle_engine) and its script compiled to IR: (path, source,
    module); or, for another target's bundle over a recording, the exit
    status of the run under emulation (bundle/emulate.py)."""
    from ktapjit.bundle.emulate import EMULATED
    from ktapjit.bundle.format import BundleError, ir_fingerprint, read, refusal
    from ktapjit.jit.codegen import host_target
    from ktapjit.jit.runtime_abi import ABI_VERSION

    _bundle_options(ns)
    _check_mode_options(ns)
    file, machine = ns.script, host_target()
    try:
        bundle = read(file)
        why = refusal(file, bundle.manifest, ABI_VERSION, bundle.target) or refusal(
            file, bundle.manifest, ABI_VERSION, machine)
        if why and bundle.target != machine and ns.engine != "interp" and bundle.target in EMULATED:
            if ns.replay is None:
                raise UsageError(f"{why}; here it can only replay a recording (--replay), under emulation")
            from ktapjit.bundle.emulate import run_emulated

            return run_emulated(bundle.target, file, ns.raw_argv, out, err)
    except BundleError as exc:
        raise UsageError(str(exc)) from None
    if why and ns.engine != "interp":
        raise UsageError(why)
    path, source = bundle.script_path, bundle.source
    module = _compile(path, source, _limits(ns), ns, err).module
    if ns.engine == "interp":
        return path, source, module  # the interpreter needs no code: an audit of the source's behaviour
    if ir_fingerprint(module) != bundle.manifest.get("ir_sha256"):
        raise UsageError(_bundle_mismatch(file, bundle.manifest, _limits(ns)))
    from ktapjit.bundle.load import BundleEngine

    try:
        ns.bundle_engine = BundleEngine(bundle, file)
    except BundleError as exc:
        raise UsageError(f"cannot load the code of {file}: {exc}; {FALL_BACK}") from None
    return path, source, module


def _bundle_mismatch(file: str, manifest: dict, limits: Limits) -> str:
    built = manifest.get("limits", {})
    differ = [f"--{name.replace('_', '-')} {value}" for name, value in sorted(built.items())
              if getattr(limits, name, value) != value]
    if differ:
        return f"{file} was compiled with {' '.join(differ)}, which its code depends on: run it with that, " \
               f"or compile it again"
    return f"{file} is damaged: its code was not made from its source"


def entry() -> None:
    global _own_process
    _own_process = True
    try:
        status = main()
    except KeyboardInterrupt:  # a Ctrl-C as main() returned, past its own handlers
        status = None
    sys.exit(_past_interrupts(status))


def _past_interrupts(status: Optional[int]) -> int:
    """Ignore SIGINT for the rest of the process (its output is written;
    what is left is the interpreter's shutdown), so a late Ctrl-C cannot
    surface as a KeyboardInterrupt traceback; `status` None: one already
    came out of main(). A Ctrl-C noted before the ignore took effect may
    raise once more here: it is the same late interrupt."""
    import signal

    while True:
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            break
        except KeyboardInterrupt:
            pass
    if status is None:
        try:
            _say(sys.stderr.buffer, "ktapjit: interrupted")
            _flush(sys.stderr.buffer)
        except (OSError, ValueError):
            pass
        status = EXIT_INTERRUPTED
    return status
