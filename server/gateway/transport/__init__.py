"""Transport: the gRPC face (servicers, interceptors, error mapping, server assembly)."""
