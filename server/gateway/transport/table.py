"""The handler table: every RPC of the contract, read from the service descriptors, with the function that answers it.

Each RPC is answered by one plain async function of `(request, call)` (an async generator for a server stream),
found by the RPC's name on the object given for its service:

    table = HandlerTable.build(
        CONTRACT_FILES,
        {"booking.v1.AuthService": AuthHandlers(login), ...},
    )

The auth policy comes from the method's `booking.v1.auth_policy` option. A method of the contract without a
handler, a handler of the wrong kind (coroutine for a stream, or the reverse) and a client- or bidi-streaming
method all fail here, when the gateway starts, never at call time. Both faces mount this one table.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import FileDescriptor, MethodDescriptor
from google.protobuf.message import Message

from booking.v1 import auth_pb2, chat_pb2, reservations_pb2
from gateway.calls import Call
from gateway.transport.policy import AuthPolicy, declared_policy

__all__ = [
    "CONTRACT_FILES",
    "HandlerTable",
    "HandlerTableError",
    "Method",
    "StreamHandler",
    "UnaryHandler",
]

CONTRACT_FILES: tuple[FileDescriptor, ...] = (auth_pb2.DESCRIPTOR, chat_pb2.DESCRIPTOR, reservations_pb2.DESCRIPTOR)

UnaryHandler = Callable[[Any, Call], Awaitable[Any]]
StreamHandler = Callable[[Any, Call], AsyncGenerator[Any, None]]


class HandlerTableError(RuntimeError):
    """The table cannot be built: a method lacks a handler, or a handler does not fit its method."""


@dataclass(frozen=True, eq=False)
class Method:
    """One RPC as both faces serve it."""

    service: str
    name: str
    request_type: type[Message]
    response_type: type[Message]
    server_streaming: bool
    policy: AuthPolicy
    handler: Callable[[Any, Call], Any]

    @property
    def path(self) -> str:
        """The full method name, "/booking.v1.ChatService/Chat": the HTTP/2 path of both faces."""
        return f"/{self.service}/{self.name}"


def _method(descriptor: MethodDescriptor, handlers: object) -> Method:
    service = descriptor.containing_service.full_name
    where = f"/{service}/{descriptor.name}"
    if descriptor.client_streaming:
        raise HandlerTableError(f"{where}: client-streaming RPCs are not served by the gateway")
    handler = getattr(handlers, descriptor.name, None)
    owner = type(handlers).__name__
    kind = "an async generator" if descriptor.server_streaming else "a coroutine"
    if handler is None:
        raise HandlerTableError(
            f"{where} has no handler: add `async def {descriptor.name}(self, request, call)` ({kind}) to {owner}"
        )
    fits = inspect.isasyncgenfunction(handler) if descriptor.server_streaming else inspect.iscoroutinefunction(handler)
    if not fits:
        raise HandlerTableError(f"{where}: {owner}.{descriptor.name} must be {kind} of (request, call)")
    return Method(
        service=service,
        name=descriptor.name,
        request_type=message_factory.GetMessageClass(descriptor.input_type),
        response_type=message_factory.GetMessageClass(descriptor.output_type),
        server_streaming=descriptor.server_streaming,
        policy=declared_policy(descriptor),
        handler=handler,
    )


class HandlerTable:
    """Every RPC the gateway serves, keyed by full method name ("/package.Service/Method")."""

    def __init__(self, methods: Iterable[Method]) -> None:
        self.methods: dict[str, Method] = {}
        for method in methods:
            if method.path in self.methods:
                raise HandlerTableError(f"{method.path} is in the table twice")
            self.methods[method.path] = method

    @classmethod
    def build(cls, files: Iterable[FileDescriptor], handlers: Mapping[str, object]) -> HandlerTable:
        """One entry per method of every service in `files`; `handlers` maps a service's full name to the object
        whose attribute of each RPC's name answers it. Raises HandlerTableError (see the module docstring)."""
        files = tuple(files)
        services = {service.full_name: service for file in files for service in file.services_by_name.values()}
        unknown = sorted(set(handlers) - set(services))
        if unknown:
            raise HandlerTableError(f"handlers given for services not in the contract: {', '.join(unknown)}")
        missing = sorted(set(services) - set(handlers))
        if missing:
            raise HandlerTableError(f"no handlers given for {', '.join(missing)}")
        return cls(
            _method(descriptor, handlers[name]) for name, service in services.items() for descriptor in service.methods
        )

    def __iter__(self) -> Iterator[Method]:
        return iter(self.methods.values())

    def __len__(self) -> int:
        return len(self.methods)

    def get(self, path: str) -> Method | None:
        """The method at `path`, or None when the table has none."""
        return self.methods.get(path)

    @property
    def service_names(self) -> tuple[str, ...]:
        """The full names of the services in the table, in order."""
        return tuple(dict.fromkeys(method.service for method in self))
