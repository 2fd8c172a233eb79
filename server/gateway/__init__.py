"""booking-gateway: an async gRPC gateway for a booking agent with passwordless Cognito sign-in."""

__version__ = "0.1.0"
