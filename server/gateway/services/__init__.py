"""Services: the gateway's behaviour, free of gRPC, boto and generated code."""
