"""The one error type of the BPF layer, with one-line messages a user can act on."""

from __future__ import annotations

import errno
import os

PERMISSION = "needs root or CAP_BPF+CAP_PERFMON"


class BpfError(Exception):
    """A bpf(2) failure or a BPF object the loader cannot use; ``str()`` is
    one line for the user, ``errno`` is the kernel's answer (or None)."""

    def __init__(self, message: str, errno_: int | None = None):
        super().__init__(message)
        self.errno = errno_


class VerifierError(BpfError):
    """The verifier refused a program: the message names it; ``log`` is the
    verifier's whole log, shown with ``-v``."""

    def __init__(self, message: str, program: str, log: str, errno_: int | None = None):
        super().__init__(message, errno_)
        self.program = program
        self.log = log


class UnsupportedError(BpfError):
    """This kernel lacks a BPF feature ktapjit needs; the message names it."""


def failure(what: str, err: int) -> BpfError:
    """The error for bpf(2) command ``what`` failing with ``err``."""
    if err in (errno.EPERM, errno.EACCES):
        return BpfError(f"{what}: permission denied: {PERMISSION}", err)
    if err == errno.ENOMEM:
        return BpfError(f"{what}: out of kernel memory (or the memlock limit: raise ulimit -l)", err)
    if err == errno.EMFILE:
        return BpfError(f"{what}: too many open files (raise ulimit -n)", err)
    if err == errno.ENOSYS:
        return UnsupportedError(f"{what}: this kernel has no bpf(2) system call (CONFIG_BPF_SYSCALL)", err)
    return BpfError(f"{what}: {os.strerror(err)}", err)


def report(exc: BpfError, verbose: bool = False) -> str:
    """What the user sees: the one line, and with ``verbose`` (``-v``) the
    verifier's log under it."""
    text = str(exc)
    log = getattr(exc, "log", "")
    if verbose and log:
        text += "\nverifier log:\n" + log.rstrip("\n")
    return text
