"""Where the image bytes come from: inline in the request, or fetched from its URL."""

from __future__ import annotations

import time
from typing import Callable

from .events import Request

# fetch(url, deadline) -> bytes; the guarded implementation lives in fetch.py.
Fetch = Callable[[str, float], bytes]


def image_bytes(request: Request, fetch: Fetch, deadline: float) -> bytes:
    if request.image is not None:
        return request.image
    assert request.url is not None  # events.parse_event guarantees one of the two
    return fetch(request.url, deadline)


def deadline_from(context, reserve_seconds: float, default_seconds: float = 30.0) -> float:
    """An absolute time.monotonic() deadline for fetching, leaving time to decode and infer."""
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    remaining = remaining_ms() / 1000.0 if callable(remaining_ms) else default_seconds
    return time.monotonic() + max(0.0, remaining - reserve_seconds)
