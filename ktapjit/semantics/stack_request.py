"""What a `stack()` or `ustack()` call asks for.

ktap's `stack(depth, skip)` keeps `depth` frames after leaving out the
`skip` innermost ones. ktapjit reads callchains from perf samples, which
start at the traced event's own frame, so `skip` counts from there (ktap's
default skip of 10 stepped over its own tracing frames, which perf does not
report). Without arguments every frame is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class StackRequest:
    """Which frames a stack() or ustack() call asks for."""

    part: str  # "kernel" (stack) or "user" (ustack)
    depth: Optional[int] = None  # None: all frames
    skip: int = 0

    def frames(self, frames: Sequence[T]) -> Sequence[T]:
        end = None if self.depth is None else self.skip + self.depth
        return frames[self.skip:end]

    def __str__(self) -> str:
        name = "stack" if self.part == "kernel" else "ustack"
        if self.depth is None and self.skip == 0:
            return f"{name}()"
        return f"{name}({'' if self.depth is None else self.depth}, {self.skip})"
