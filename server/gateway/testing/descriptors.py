"""Services declared at run time like the contract's own (a file descriptor with the `auth_policy` option), for
handler tables in tests and benchmarks: every method takes and returns a `google.protobuf.BytesValue`."""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor

from booking.v1 import options_pb2

# A method's declared policy (an `options_pb2.AUTH_POLICY_*` value, or None for none declared) and whether it
# streams its answers.
MethodShape = tuple[int | None, bool]


def service_file(file_name: str, service: str, methods: Mapping[str, MethodShape]) -> FileDescriptor:
    """The file `file_name` declaring `service` ("package.Name") with `methods`, added to the default descriptor
    pool once (later calls return the same file)."""
    pool = descriptor_pool.Default()
    try:
        return pool.FindFileByName(file_name)
    except KeyError:
        pass
    package, _, name = service.rpartition(".")
    proto = descriptor_pb2.FileDescriptorProto(
        name=file_name,
        package=package,
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto", "booking/v1/options.proto"],
    )
    declared = proto.service.add(name=name)
    for method_name, (policy, streaming) in methods.items():
        method = declared.method.add(
            name=method_name,
            input_type=".google.protobuf.BytesValue",
            output_type=".google.protobuf.BytesValue",
            server_streaming=streaming,
        )
        if policy is not None:
            method.options.Extensions[options_pb2.auth_policy] = policy  # type: ignore[misc]  # an enum value
    pool.Add(proto)
    return pool.FindFileByName(file_name)
