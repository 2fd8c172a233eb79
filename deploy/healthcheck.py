"""The image's HEALTHCHECK: the standard gRPC health service on the gRPC face, exit 0 when SERVING.

It dials GATEWAY_LISTEN's port on loopback, in plaintext (`--insecure`, the Kubernetes layout behind Envoy) or,
when GATEWAY_TLS_CERT is set, over TLS trusting that certificate chain (the name checked is GATEWAY_HEALTHCHECK_
TLS_NAME, "localhost" unless set).
"""

from __future__ import annotations

import os
import sys

import grpc
from grpc_health.v1 import health_pb2


def main() -> int:
    port = os.environ.get("GATEWAY_LISTEN", "0.0.0.0:50051").rsplit(":", 1)[1]
    target = f"127.0.0.1:{port}"
    cert = os.environ.get("GATEWAY_TLS_CERT")
    if cert:
        with open(cert, "rb") as chain:
            credentials = grpc.ssl_channel_credentials(root_certificates=chain.read())
        name = os.environ.get("GATEWAY_HEALTHCHECK_TLS_NAME", "localhost")
        channel = grpc.secure_channel(target, credentials, options=[("grpc.ssl_target_name_override", name)])
    else:
        channel = grpc.insecure_channel(target)
    with channel:
        try:
            check = channel.unary_unary(
                "/grpc.health.v1.Health/Check",
                request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                response_deserializer=health_pb2.HealthCheckResponse.FromString,
            )
            answer = check(health_pb2.HealthCheckRequest(service=""), timeout=2)
        except grpc.RpcError as error:
            print(f"health check failed: {error.code().name}", file=sys.stderr)
            return 1
    serving = answer.status == health_pb2.HealthCheckResponse.SERVING
    if not serving:
        print(f"health: {health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)}", file=sys.stderr)
    return 0 if serving else 1


if __name__ == "__main__":
    sys.exit(main())
