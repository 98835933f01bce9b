"""Where the image comes from: bytes inline in the request, or a body streamed from its URL."""

from __future__ import annotations

import time
from typing import BinaryIO, Callable, Union

from .events import Request

# An image source: bytes, or a readable, seekable binary file the decoder reads as it goes
# (fetch.Fetched: a URL's body, downloaded as it is read; it has ``received`` and ``waited``).
Source = Union[bytes, BinaryIO]

# fetch(url, deadline) -> the body (fetch.fetch_url: a Fetched, open until closed); tests may return bytes.
Fetch = Callable[[str, float], Source]


def image_source(request: Request, fetch: Fetch, deadline: float) -> Source:
    if request.image is not None:
        return request.image
    assert request.url is not None  # events.parse_event guarantees one of the two
    return fetch(request.url, deadline)


def release(source: Source) -> tuple[int | None, float]:
    """Close a streamed source. Returns (bytes received, seconds its reads spent waiting for them)."""
    if isinstance(source, (bytes, bytearray)):
        return len(source), 0.0
    source.close()
    return getattr(source, "received", None), getattr(source, "waited", 0.0)


def deadline_from(context, reserve_seconds: float, default_seconds: float = 30.0) -> float:
    """An absolute time.monotonic() deadline for fetching, leaving time to decode and infer."""
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    remaining = remaining_ms() / 1000.0 if callable(remaining_ms) else default_seconds
    return time.monotonic() + max(0.0, remaining - reserve_seconds)
