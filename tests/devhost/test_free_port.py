"""Server ports for the local stack come from below the kernel's ephemeral range, so that no outgoing
connection on the machine can take one between the pick and the bind, or across a stack's restart."""

from __future__ import annotations

import socket

import pytest

from devhost import processes


def test_a_server_port_is_below_the_ephemeral_range_and_free() -> None:
    low = processes._ephemeral_low()
    ports = {processes.free_port() for _ in range(20)}
    assert all(10000 <= port < low for port in ports), (low, sorted(ports))
    assert len(ports) > 1  # picked at random, not the same port for every stack
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", ports.pop()))


def test_a_port_someone_listens_on_is_never_picked(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", processes.free_port()))
        taken.listen()
        busy = taken.getsockname()[1]
        # Every random pick lands on the busy port first: the next free one is returned instead.
        picks = iter([busy, busy, busy + 1 if busy + 1 < processes._ephemeral_low() else busy - 1])
        monkeypatch.setattr(processes._pick, "randrange", lambda *_: next(picks))
        assert processes.free_port() != busy


def test_without_room_below_the_ephemeral_range_the_kernel_picks(monkeypatch: pytest.MonkeyPatch) -> None:
    real_low = processes._ephemeral_low()
    monkeypatch.setattr(processes, "_ephemeral_low", lambda: 10500)
    port = processes.free_port()
    assert port >= real_low  # the kernel's own pick, from its ephemeral range
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", port))
