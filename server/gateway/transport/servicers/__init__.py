"""gRPC servicers: decode requests, call a service, encode responses. No business logic, no boto."""
