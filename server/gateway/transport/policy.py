"""Per-RPC auth policy, read from the `booking.v1.auth_policy` method option in the contract."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

from google.protobuf.descriptor import FileDescriptor

from booking.v1 import auth_pb2, chat_pb2, options_pb2, reservations_pb2


class AuthPolicy(enum.Enum):
    """What a call must present before its RPC runs."""

    PUBLIC = "PUBLIC"
    OPTIONAL = "OPTIONAL"
    REQUIRED = "REQUIRED"


# Infrastructure services that are always PUBLIC: `buf curl` and grpcurl send no custom headers on reflection.
PUBLIC_SERVICE_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)

CONTRACT_FILES: tuple[FileDescriptor, ...] = (
    auth_pb2.DESCRIPTOR,
    chat_pb2.DESCRIPTOR,
    reservations_pb2.DESCRIPTOR,
)


def _from_option(value: int) -> AuthPolicy:
    if value == options_pb2.AUTH_POLICY_PUBLIC:
        return AuthPolicy.PUBLIC
    if value == options_pb2.AUTH_POLICY_OPTIONAL:
        return AuthPolicy.OPTIONAL
    # AUTH_POLICY_REQUIRED and an RPC that declares nothing: deny by default.
    return AuthPolicy.REQUIRED


def read_policies(files: Iterable[FileDescriptor] = CONTRACT_FILES) -> dict[str, AuthPolicy]:
    """Map "/booking.v1.Service/Method" to its declared policy."""
    policies: dict[str, AuthPolicy] = {}
    for file in files:
        for service in file.services_by_name.values():
            for method in service.methods:
                options = method.GetOptions()
                declared = options.Extensions[options_pb2.auth_policy]
                policies[f"/{service.full_name}/{method.name}"] = _from_option(declared)
    return policies


class PolicyTable:
    """Looks up the policy of a full method name; unknown RPCs are REQUIRED, infrastructure is PUBLIC."""

    def __init__(self, policies: Mapping[str, AuthPolicy] | None = None) -> None:
        self._policies = dict(read_policies() if policies is None else policies)

    def policy_for(self, method: str) -> AuthPolicy:
        """The policy of `method` ("/package.Service/Method")."""
        if method.startswith(PUBLIC_SERVICE_PREFIXES):
            return AuthPolicy.PUBLIC
        return self._policies.get(method, AuthPolicy.REQUIRED)

    def is_known(self, method: str) -> bool:
        """True for RPCs of the contract and infrastructure; metrics label anything else as unknown."""
        return method in self._policies or method.startswith(PUBLIC_SERVICE_PREFIXES)

    def is_infrastructure(self, method: str) -> bool:
        """Health and reflection: exempt from the concurrency limit so probes work under overload."""
        return method.startswith(PUBLIC_SERVICE_PREFIXES)
