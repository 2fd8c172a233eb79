"""Benchmarks: the gateway against a bare grpc.aio server in the same run, on loopback, printing ratios."""
