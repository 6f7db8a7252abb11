"""The bundle container: a zip archive behind a two-line text header.

    #!/usr/bin/env -S ktapjit run
    # ktapjit bundle: `ktapjit source FILE` prints the script
    <zip: manifest.json, source, tables.json, code.image>

The header makes the file self-describing to `head` and runnable as
``./FILE`` (the shebang); zip readers skip leading bytes. ``manifest.json``
holds what a run checks before loading anything (format, ktapjit version,
runtime ABI version, target) and what a reader audits (the script's path,
the command line, the versions used); ``tables.json`` the tables the lowering
made (jit/lower.py Lowered, without its LLVM IR text); ``code.image`` the
script's code and the runtime for the target, linked by the JIT's linker
into one image (jit/image.py) that a run maps. JSON and bytes: nothing in a
bundle is unpickled, and `ktapjit source` reads only the JSON and the
source (the image is decoded only to run it, after the checks below).

May import: ktapjit, ktapjit.diag, ktapjit.ir.printer, ktapjit.jit (lowered's Lowered, image's FORMAT),
ktapjit.semantics.stack_request, stdlib.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from typing import Optional

import ktapjit
from ktapjit.bundle.header import HEADER, is_bundle  # noqa: F401  (is_bundle: part of this module's API)
from ktapjit.diag import Span

FORMAT = "ktapjit-bundle"
FORMAT_VERSION = 1
CODE_MEMBER = "code.image"


class BundleError(Exception):
    """A bundle that cannot be read or run here: one line, for the user."""


@dataclass
class Bundle:
    """A bundle's contents, as read (or about to be written)."""

    manifest: dict
    source: bytes
    tables: dict
    code: bytes

    @property
    def target(self) -> str:
        return self.manifest["target"]

    @property
    def script_path(self) -> str:
        return self.manifest["script"]


def write(path: str, bundle: Bundle) -> None:
    data = io.BytesIO()
    data.write(HEADER)
    with zipfile.ZipFile(data, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, payload in (("manifest.json", _json(bundle.manifest)), ("source", bundle.source),
                              ("tables.json", _json(bundle.tables)), (CODE_MEMBER, bundle.code)):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # reproducible bytes
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, payload)
    try:
        with open(path, "wb") as handle:
            handle.write(data.getvalue())
    except OSError as exc:
        raise BundleError(f"cannot write bundle '{path}': {exc.strerror or exc}") from None


def read(path: str) -> Bundle:
    """The bundle at `path`, its members checked against the manifest."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise BundleError(f"cannot read bundle '{path}': {exc.strerror or exc}") from None
    if not data.startswith(HEADER):
        raise BundleError(f"{path} is not a ktapjit bundle (make one with `ktapjit compile`)")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            manifest = json.loads(archive.read("manifest.json"))
            if manifest.get("format") != FORMAT:
                raise ValueError("not a bundle manifest")
            source = archive.read("source")
            tables = json.loads(archive.read("tables.json"))
            code = archive.read(CODE_MEMBER)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError, zipfile.LargeZipFile) as exc:
        raise BundleError(f"{path} is a damaged ktapjit bundle ({exc})") from None
    if hashlib.sha256(code).hexdigest() != manifest.get("code_sha256"):
        raise BundleError(f"{path} is a damaged ktapjit bundle (its code does not match its manifest)")
    return Bundle(manifest, source, tables, code)


def refusal(path: str, manifest: dict, abi_version: int, machine: str) -> Optional[str]:
    """Why this ktapjit on `machine` cannot run the bundle's code, in one
    line, or None. The runtime inside a bundle speaks the ABI it was built
    with, and the Python side binds by this ktapjit's table, so both must
    agree exactly; so must ktapjit, whose IR the code was made from."""
    from ktapjit.jit.image import FORMAT as CODE_KIND  # how the code is laid out and loaded

    again = f"compile it again with this ktapjit (ktapjit source {path} prints the script)"
    if manifest.get("format_version") != FORMAT_VERSION:
        return f"{path}: bundle format {manifest.get('format_version')} is not this ktapjit's " \
               f"({FORMAT_VERSION}): {again}"
    if manifest.get("ktapjit") != ktapjit.__version__:
        return f"{path} was built by ktapjit {manifest.get('ktapjit')}, this is ktapjit {ktapjit.__version__}: {again}"
    if manifest.get("abi") != abi_version:
        return f"{path} was built for runtime ABI {manifest.get('abi')}, this ktapjit's is {abi_version}: {again}"
    if manifest.get("code_kind") != CODE_KIND:
        return f"{path} holds code of kind {manifest.get('code_kind')!r}, which this ktapjit cannot load: {again}"
    if manifest.get("target") != machine:
        return f"{path} holds {manifest.get('target')} code and this machine is {machine}: " \
               f"compile it with --target {machine} (ktapjit source {path} prints the script)"
    return None


def ir_fingerprint(module) -> str:
    """What the code was made from: the optimised IR, printed. A run compiles
    the embedded source again (the lifecycle and the event feed read the IR)
    and must arrive at the same text, or code and tables do not fit it."""
    from ktapjit.ir.printer import format_module

    return hashlib.sha256(format_module(module).encode()).hexdigest()


# -- the lowering's tables as JSON


def tables_of(lowered) -> dict:
    """jit/lower.py Lowered, without the LLVM IR text, as plain JSON values."""
    return {
        "entries": lowered.entries,
        "sites": [None if s is None else [s.file, s.line, s.col, s.end_line, s.end_col] for s in lowered.sites],
        "strings": [base64.b64encode(s).decode("ascii") for s in lowered.strings],
        "event_slots": [[kind, _slot_name(kind, name)] for kind, name in lowered.event_slots],
        "entry_slots": lowered.entry_slots,
        "nglobals": lowered.nglobals,
    }


def lowered_of(tables: dict):
    """The Lowered the engine runs with, from `tables_of`'s JSON."""
    from ktapjit.jit.lowered import Lowered

    return Lowered(
        llvm_ir="",  # the code is already made
        entries=dict(tables["entries"]),
        sites=[None if s is None else Span(*s) for s in tables["sites"]],
        strings=[base64.b64decode(s) for s in tables["strings"]],
        event_slots=[(kind, _slot_of(kind, name)) for kind, name in tables["event_slots"]],
        entry_slots={name: list(slots) for name, slots in tables["entry_slots"].items()},
        nglobals=int(tables["nglobals"]),
    )


def _slot_name(kind: str, name):
    """A slot's name as JSON: a field's name, or a stack slot's request."""
    return [name.part, name.depth, name.skip] if kind == "stack" else name


def _slot_of(kind: str, name):
    from ktapjit.semantics.stack_request import StackRequest

    return StackRequest(*name) if kind == "stack" else name


def _json(value) -> bytes:
    return json.dumps(value, indent=1, sort_keys=True).encode() + b"\n"
