"""Which event path a JIT run took: the native feeds it made (None for a
session that took the per-event path), for tests that must not pass
because a session quietly fell back."""

from __future__ import annotations

from contextlib import contextmanager
from unittest import mock

from ktapjit.jit import engine


@contextmanager
def spied_feeds():
    """The native feeds the JIT makes while the block runs (None: Python path)."""
    made = []
    original = engine.JitRun.native_feed

    def spy(self, *args):
        feed = original(self, *args)
        made.append(feed)
        return feed

    with mock.patch.object(engine.JitRun, "native_feed", spy):
        yield made
