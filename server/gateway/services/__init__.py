"""Services: the gateway's behaviour, over ports. They import no grpc, no boto and no generated code."""
