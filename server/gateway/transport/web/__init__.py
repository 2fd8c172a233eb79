"""The web face: the contract's services over Connect and gRPC-Web for browsers, plus the browser chat itself.

Same process, same event loop and same call pipeline as the grpc.aio face (`transport/pipeline.py`); only the
rendering differs. See docs/web.md.
"""

from __future__ import annotations

from gateway.transport.web.app import WebApp
from gateway.transport.web.face import WebFace
from gateway.transport.web.server import WebServer

__all__ = ["WebApp", "WebFace", "WebServer"]
