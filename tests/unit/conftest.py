"""Fixtures shared by the fetch tests (``fetch_fixtures`` holds the test doubles themselves)."""

from __future__ import annotations

import pytest

from fetch_fixtures.helpers import LoopbackServer


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
