"""Transport: the handler table, the call pipeline and its two faces (grpc.aio and Connect/gRPC-Web), the error
table, the server."""
