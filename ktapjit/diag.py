"""Source spans and diagnostics shared by every stage.

A compile error is collected as a Diagnostic and rendered as
``SCRIPT:LINE:COL: error: MESSAGE`` plus the source line and a caret.
A runtime error is a RuntimeFault carrying the span of the faulting token;
code that detects a fault without knowing where it is (the shared semantics)
raises it with ``span=None`` and the engine fills in the span.
``counted`` words a count as every message to the user gives it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def counted(n: int, noun: str, grouped: bool = False) -> str:
    """'1 event', '2 events'; grouped: '12,345 events' (for counts that grow large)."""
    shown = f"{n:,}" if grouped else f"{n}"
    return f"{shown} {noun}" if n == 1 else f"{shown} {noun}s"


@dataclass(frozen=True, slots=True)
class Span:
    """A source range. ``line`` and ``col`` are 1-based; ``col`` counts bytes."""

    file: str
    line: int
    col: int
    end_line: int = 0
    end_col: int = 0

    def location(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"

    def shifted(self, offset: int) -> "Span":
        """The position `offset` bytes into a single-line construct starting here."""
        return Span(self.file, self.line, self.col + offset, self.line, self.col + offset)


@dataclass(slots=True)
class Diagnostic:
    """One error at a span, with an optional hint."""

    span: Span
    message: str
    hint: str | None = None

    def render(self, source: bytes | None) -> str:
        """The user-facing text: header, the offending source line, a caret."""
        lines = [f"{self.span.location()}: error: {self.message}"]
        text = _source_line(source, self.span.line)
        if text is not None:
            lines.append(text)
            lines.append(_caret_prefix(text, self.span.col) + "^")
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)


def _source_line(source: bytes | None, line: int) -> str | None:
    if source is None:
        return None
    all_lines = source.split(b"\n")
    if not 1 <= line <= len(all_lines):
        return None
    return all_lines[line - 1].rstrip(b"\r").decode("utf-8", "replace")


def _caret_prefix(text: str, col: int) -> str:
    # Keep tabs so the caret lines up under the token in a terminal.
    raw = text.encode("utf-8", "replace")[: max(col - 1, 0)].decode("utf-8", "replace")
    return "".join("\t" if ch == "\t" else " " for ch in raw)


@dataclass(slots=True)
class Diagnostics:
    """Collected, not thrown: a pass records errors and the runner stops after
    it. `source` is the script text the spans point into, for rendering."""

    errors: list[Diagnostic] = field(default_factory=list)
    source: bytes | None = None

    def error(self, span: Span, message: str, hint: str | None = None) -> None:
        self.errors.append(Diagnostic(span, message, hint))

    def add(self, diagnostic: Diagnostic) -> None:
        self.errors.append(diagnostic)

    def __bool__(self) -> bool:
        return bool(self.errors)

    def first(self) -> Diagnostic:
        return min(self.errors, key=lambda d: (d.span.line, d.span.col))


class CompileError(Exception):
    """Raised at a boundary (a compile step, binding a probe) with the
    diagnostic to report and, once known, the source it points into."""

    def __init__(self, diagnostic: Diagnostic, source: bytes | None = None):
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic
        self.source = source

    def render(self) -> str:
        return self.diagnostic.render(self.source)


class RuntimeFault(Exception):
    """A script runtime error: ``error: MESSAGE at SCRIPT:LINE:COL``."""

    def __init__(self, message: str, span: Span | None = None):
        super().__init__(message)
        self.message = message
        self.span = span

    def render(self) -> str:
        where = f" at {self.span.location()}" if self.span else ""
        return f"error: {self.message}{where}"
