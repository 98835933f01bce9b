"""Fixtures shared by the unit tests (``fetch_fixtures`` holds the fetch test doubles themselves)."""

from __future__ import annotations

import pytest

from fetch_fixtures.helpers import LoopbackServer, refuse_non_loopback


@pytest.fixture(autouse=True)
def no_network_but_loopback(monkeypatch):
    """``socket.connect`` and ``socket.getaddrinfo`` refuse anything non-loopback in every unit
    test, so a bug in the fetcher fails a test instead of sending traffic."""
    refuse_non_loopback(monkeypatch)


@pytest.fixture
def server_factory():
    """``make(routes, tls=None)`` -> a started LoopbackServer, closed after the test."""
    servers = []

    def make(routes, tls=None):
        server = LoopbackServer(routes, tls=tls)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()
