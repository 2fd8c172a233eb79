"""Services: what the gateway does (sign-in, bookings, the agent), free of gRPC, boto and generated code."""
