"""Loopback ports for tests that need nothing to answer."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port where connections are refused at once, for as long as the block runs.

    The port stays bound (and never listens) until the block ends: a port picked and closed at once could be taken
    meanwhile by a server of another test running beside this one.
    """
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield int(holder.getsockname()[1])
