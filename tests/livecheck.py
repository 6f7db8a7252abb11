"""Why a live test cannot run here, exactly (None when it can)."""

import os
from typing import Optional


def live_skip_reason(what: str, required: str, missing: str) -> Optional[str]:
    """`what` needs root; `required` is a path under tracefs that must exist,
    and `missing` says what its absence means."""
    if os.geteuid() != 0:
        return f"{what} needs root"
    from ktapjit.events.errors import EventsError
    from ktapjit.events.tracefs import tracefs_root

    try:
        root = tracefs_root()
    except EventsError as exc:
        return f"tracefs unavailable: {exc}"
    if not (root / required).exists():
        return f"{missing} ({root / required} is missing)"
    return None
