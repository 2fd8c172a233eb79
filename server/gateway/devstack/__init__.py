"""The embedded local AWS: moto in server mode on loopback, Cognito's EMAIL_OTP flow, a dev mailbox.

Used by `gateway serve` when no Cognito pool is configured, and by the tests. Never imported in production
configurations: `gateway.app` only reaches it through `gateway.__main__` and the test fixtures.
"""

from gateway.devstack.stack import DevStack, DevStackEndpoints

__all__ = ["DevStack", "DevStackEndpoints"]
