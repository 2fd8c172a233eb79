"""Per-RPC auth policy, read from the `booking.v1.auth_policy` method option in the contract."""

from __future__ import annotations

import enum

from google.protobuf.descriptor import MethodDescriptor

from booking.v1 import options_pb2


class AuthPolicy(enum.Enum):
    """What a call must present before its RPC runs."""

    PUBLIC = "PUBLIC"
    OPTIONAL = "OPTIONAL"
    REQUIRED = "REQUIRED"


# Infrastructure services that are always PUBLIC: `buf curl` and grpcurl send no custom headers on reflection.
INFRASTRUCTURE_SERVICES = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
)


def declared_policy(method: MethodDescriptor) -> AuthPolicy:
    """The policy `method` declares in the contract; an RPC that declares none is REQUIRED (deny by default)."""
    value = method.GetOptions().Extensions[options_pb2.auth_policy]
    if value == options_pb2.AUTH_POLICY_PUBLIC:
        return AuthPolicy.PUBLIC
    if value == options_pb2.AUTH_POLICY_OPTIONAL:
        return AuthPolicy.OPTIONAL
    return AuthPolicy.REQUIRED
