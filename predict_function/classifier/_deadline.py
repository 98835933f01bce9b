"""A fetch's absolute deadline, and the one watchdog thread that enforces it on sockets.

Socket timeouts bound each read, not their sum: a server sending one byte every few seconds
never trips them. So each ``Deadline`` keeps a ``dup()`` of every socket it watches (same
kernel socket, own descriptor, so it can never hit a reused descriptor) and, when it passes,
``shutdown()``s them, which wakes any blocked read or TLS handshake.

One daemon thread per process does that for every deadline (started by the first one),
instead of a ``threading.Timer`` per fetch: creating and starting a thread cost each URL
request ~0.15 ms of wall time and ~0.3 ms of CPU (the caller waits for the new thread to
run; measured in session 6). Arming a deadline is a heap push; the thread is only woken when
the new deadline is earlier than the one it sleeps towards.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import socket
import threading
import time

from .errors import UpstreamTimeoutError

log = logging.getLogger(__name__)


class Deadline:
    """An absolute ``time.monotonic()`` deadline that shuts the sockets it watches down when it passes."""

    def __init__(self, at: float, watchdog: "Watchdog | None" = None) -> None:
        if not math.isfinite(at):  # the watchdog's wait would overflow and its thread die for good
            raise ValueError(f"a deadline must be a finite time, got {at}")
        self.at = at
        self.fired = False
        self._closed = False
        self._armed = False
        self._lock = threading.Lock()
        self._watched: list[socket.socket] = []
        self._watchdog = watchdog or WATCHDOG

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def expired(self) -> bool:
        return self.fired or self.remaining() <= 0

    def check(self) -> None:
        if self.expired():
            raise UpstreamTimeoutError("fetching the URL took longer than the time left for this request")

    @property
    def closed(self) -> bool:
        return self._closed

    def watch(self, sock: socket.socket) -> None:
        """Shut ``sock`` down when the deadline passes (at once if it already has)."""
        with self._lock:
            if self._closed:
                raise ValueError("deadline is closed")
            self._watched.append(sock.dup())
            arm, self._armed = not self._armed, True
            fire_now = self.fired
        if arm:
            self._watchdog.arm(self)
        if fire_now:
            self.fire()

    def unwatch(self) -> None:
        """Stop watching the sockets watched so far (close their duplicates, so closing a socket
        closes its connection); the deadline stays armed for the next ones."""
        with self._lock:
            for sock in self._watched:
                sock.close()
            self._watched.clear()

    def fire(self) -> None:
        """The deadline has passed: shut down every watched socket (the watchdog calls this)."""
        with self._lock:
            if self._closed:
                return
            self.fired = True
            for sock in self._watched:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        """Stop watching: close the duplicates; the watchdog will never fire this deadline."""
        with self._lock:
            self._closed = True
            for sock in self._watched:
                sock.close()
            self._watched.clear()
        if self._armed:
            self._watchdog.forget(self)


class Watchdog:
    """One daemon thread that fires each armed ``Deadline`` when its time comes (unless closed first)."""

    def __init__(self, name: str = "fetch-deadline-watchdog") -> None:
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()  # ties: first armed, first fired; never compares Deadlines
        self._wake_at: float | None = None  # what the thread sleeps towards; None: until notified
        self._thread: threading.Thread | None = None

    @property
    def pending(self) -> int:
        """Deadlines armed and neither fired nor closed (closed ones may wait in the heap)."""
        with self._cond:
            return sum(1 for _, _, deadline in self._heap if not deadline.closed)

    def arm(self, deadline: Deadline) -> None:
        with self._cond:
            heapq.heappush(self._heap, (deadline.at, next(self._order), deadline))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            elif self._wake_at is None or deadline.at < self._wake_at:
                self._cond.notify()

    def forget(self, deadline: Deadline) -> None:
        """``deadline`` was closed: it leaves the heap now if it is the earliest there (a Lambda
        function serves one request at a time, so it is), else when it reaches the top."""
        with self._cond:
            self._drop_closed()

    def _drop_closed(self) -> None:
        while self._heap and self._heap[0][2].closed:
            heapq.heappop(self._heap)

    def _run(self) -> None:
        while True:
            due: list[Deadline] = []
            with self._cond:
                self._drop_closed()
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    due.append(heapq.heappop(self._heap)[2])
                if not due:
                    self._wake_at = self._heap[0][0] if self._heap else None
                    self._cond.wait(None if self._wake_at is None
                                    else min(self._wake_at - now, threading.TIMEOUT_MAX))
                    self._wake_at = None
                    continue
            for deadline in due:  # outside the lock: fire() takes the deadline's own lock
                try:
                    deadline.fire()
                except Exception:  # noqa: BLE001 - the thread must outlive any one deadline
                    log.exception("fetch deadline watchdog: firing a deadline failed")


WATCHDOG = Watchdog()
