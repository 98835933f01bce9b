"""classifier._deadline: a fetch's deadline and the one watchdog thread that shuts its sockets down.

Each test uses its own ``Watchdog`` (the seam ``Deadline`` takes), except the one that checks
that real fetches share the process's single thread. A shut-down socket shows as EOF to a read
blocked on it; waits here are failure guards, never timings under test.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from classifier import fetch
from classifier._deadline import WATCHDOG, Deadline, Watchdog
from classifier.fetch import FetchPolicy, fetch_url

from fetch_fixtures.helpers import image

GUARD_SECONDS = 10.0  # a read that does not end by then means the watchdog did not fire


@pytest.fixture
def pairs():
    made = []

    def make():
        a, b = socket.socketpair()
        a.settimeout(GUARD_SECONDS)
        made.append((a, b))
        return a, b

    yield make
    for a, b in made:
        a.close()
        b.close()


def shut_down(sock: socket.socket) -> bool:
    """True when ``sock`` reads EOF (the watchdog shut it down); False when the peer's byte arrives."""
    return sock.recv(1) == b""


def test_a_passing_deadline_shuts_its_socket_down(pairs):
    ours, peer = pairs()
    deadline = Deadline(time.monotonic() + 0.1, Watchdog(name="test-watchdog"))
    deadline.watch(ours)
    assert shut_down(ours)  # a read blocked on it ends
    assert deadline.fired and deadline.expired()
    deadline.close()


def test_an_earlier_deadline_armed_later_fires_first(pairs):
    watchdog = Watchdog(name="test-watchdog")
    late_sock, late_peer = pairs()
    early_sock, _ = pairs()
    late = Deadline(time.monotonic() + 60, watchdog)
    late.watch(late_sock)  # the thread now sleeps towards a minute from now
    early = Deadline(time.monotonic() + 0.1, watchdog)
    early.watch(early_sock)
    assert shut_down(early_sock)
    assert early.fired and not late.fired
    late_peer.sendall(b"x")
    assert not shut_down(late_sock)  # still open
    late.close()
    early.close()


def test_a_closed_deadline_never_fires(pairs):
    watchdog = Watchdog(name="test-watchdog")
    ours, peer = pairs()
    closed = Deadline(time.monotonic() + 0.05, watchdog)
    closed.watch(ours)
    closed.close()
    # A later deadline the thread must pass the closed one's time to reach.
    witness_sock, _ = pairs()
    witness = Deadline(time.monotonic() + 0.2, watchdog)
    witness.watch(witness_sock)
    assert shut_down(witness_sock)
    assert not closed.fired
    peer.sendall(b"x")
    assert not shut_down(ours)
    witness.close()


def test_a_deadline_already_passed_shuts_the_socket_at_once(pairs):
    ours, _ = pairs()
    deadline = Deadline(time.monotonic() - 1, Watchdog(name="test-watchdog"))
    deadline.watch(ours)
    assert shut_down(ours)
    assert deadline.fired


def test_a_socket_watched_after_firing_is_shut_at_once(pairs):
    first, _ = pairs()
    second, _ = pairs()
    deadline = Deadline(time.monotonic() + 0.05, Watchdog(name="test-watchdog"))
    deadline.watch(first)  # e.g. the first hop of a redirect
    assert shut_down(first)
    deadline.watch(second)  # the next hop's socket, after the deadline has fired
    assert shut_down(second)


def test_many_deadlines_due_together_all_fire(pairs):
    watchdog = Watchdog(name="test-watchdog")
    at = time.monotonic() + 0.1
    socks, deadlines = [], []
    for _ in range(20):
        sock, _ = pairs()
        deadline = Deadline(at, watchdog)
        deadline.watch(sock)
        socks.append(sock)
        deadlines.append(deadline)
    assert all(shut_down(sock) for sock in socks)
    assert all(d.fired for d in deadlines) and watchdog.pending == 0


def test_watching_after_close_is_refused(pairs):
    deadline = Deadline(time.monotonic() + 5, Watchdog(name="test-watchdog"))
    deadline.close()
    with pytest.raises(ValueError):
        deadline.watch(pairs()[0])


def test_closing_keeps_nothing_pending_and_the_thread_is_started_once(pairs):
    watchdog = Watchdog(name="test-watchdog-once")
    for _ in range(200):  # deadlines far away, closed in order as requests end
        deadline = Deadline(time.monotonic() + 30, watchdog)
        deadline.watch(pairs()[0])
        deadline.close()
    assert watchdog.pending == 0
    assert [t.name for t in threading.enumerate()].count("test-watchdog-once") == 1


def test_fetches_share_one_watchdog_thread_and_start_no_timer(server_factory):
    payload = b"\xff\xd8" + bytes(range(256)) * 20
    server = server_factory({"/cat.jpg": image(payload, "image/jpeg")})
    policy = FetchPolicy(allow_private_urls=True, allowed_ports=(server.port,))
    url = f"http://127.0.0.1:{server.port}/cat.jpg"
    for _ in range(30):
        with fetch_url(url, policy, deadline=time.monotonic() + 20) as fetched:
            assert fetched.read() == payload
    names = [t.name for t in threading.enumerate()]
    assert names.count("fetch-deadline-watchdog") == 1
    assert not any(isinstance(t, threading.Timer) for t in threading.enumerate())
    assert WATCHDOG.pending == 0
    assert fetch.Deadline is Deadline


def test_a_deadline_that_fails_to_fire_does_not_stop_the_watchdog(pairs, caplog):
    class Broken(Deadline):
        def fire(self) -> None:
            raise RuntimeError("boom")

    watchdog = Watchdog(name="test-watchdog")
    broken = Broken(time.monotonic() + 0.05, watchdog)
    broken.watch(pairs()[0])
    sock, _ = pairs()
    later = Deadline(time.monotonic() + 0.2, watchdog)
    later.watch(sock)
    assert shut_down(sock)  # the next deadline still fires
    assert later.fired and "firing a deadline failed" in caplog.text


@pytest.mark.parametrize("at", [float("inf"), float("nan"), float("-inf")])
def test_a_deadline_must_be_a_finite_time(at):
    """An infinite one made the watchdog's wait overflow: its thread died and never restarted,
    so no later deadline fired."""
    with pytest.raises(ValueError, match="finite"):
        Deadline(at)


def test_a_deadline_far_in_the_future_does_not_kill_the_watchdog():
    watchdog = Watchdog(name="test-far-future")
    far = Deadline(time.monotonic() + 1e12, watchdog)
    watchdog.arm(far)
    time.sleep(0.1)  # the thread now waits towards the far deadline
    soon = Deadline(time.monotonic() + 0.05, watchdog)
    watchdog.arm(soon)
    time.sleep(0.3)
    assert soon.fired and not far.fired
