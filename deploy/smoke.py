"""Smoke test of a deployed gateway, with the Python client the tests use (`booking_client`): sign in with the
code emailed to a real mailbox, book a night, find it in your reservations, cancel it, sign out.

    python3 deploy/smoke.py --target booking.example.com:443 --email you@example.com

It prints where the code went and reads it from standard input. `--insecure` speaks plaintext (a
`kubectl port-forward` to a pod, or a gateway on loopback); `--root-certs` trusts a private CA. Exit 0 when
every step did what it should; the booking is cancelled again, so nothing is left behind but a cancelled stay.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import random
import sys
from collections.abc import Sequence
from pathlib import Path

from booking_client import BookingError, NotSignedIn, Unauthenticated, connect


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--target", required=True, help="HOST:PORT of the gateway's gRPC face (or Envoy)")
    parser.add_argument("--email", required=True, help="a mailbox you can read: the code is sent there")
    parser.add_argument("--insecure", action="store_true", help="plaintext (port-forward or loopback only)")
    parser.add_argument("--root-certs", type=Path, help="PEM roots to verify the gateway's certificate with")
    return parser.parse_args(argv)


def step(text: str) -> None:
    print(text, flush=True)


async def smoke(args: argparse.Namespace) -> int:
    roots = args.root_certs.read_bytes() if args.root_certs else None
    async with connect(args.target, tls=not args.insecure, root_certificates=roots) as client:
        await client.wait_until_ready(10)
        properties = await client.list_properties()
        if not properties:
            step("FAILED: the gateway lists no properties")
            return 1
        prop = properties[0]
        step(f"ok: {len(properties)} properties, booking {prop.property_id}")

        challenge = await client.initiate_login(args.email, name="Smoke Test")
        step(f"code sent to {challenge.destination}; type it and press enter:")
        code = (await asyncio.to_thread(sys.stdin.readline)).strip()
        session = await client.verify_otp(challenge.login_id, code)
        step(f"ok: signed in as guest {session.guest_id}")

        # A night far ahead, picked at random, so that runs do not meet each other.
        check_in = datetime.date.today() + datetime.timedelta(days=random.randint(400, 700))
        check_out = check_in + datetime.timedelta(days=1)
        reservation = await client.create_reservation(prop.property_id, check_in, check_out, 1)
        step(f"ok: booked {reservation.reservation_id} for {check_in.isoformat()}")
        listed = await client.list_reservations()
        if reservation.reservation_id not in {r.reservation_id for r in listed.reservations}:
            step("FAILED: the new booking is not in the guest's reservations")
            return 1
        step("ok: the booking is in the guest's reservations")
        await client.cancel_reservation(reservation.reservation_id)
        step("ok: cancelled it again")

        await client.sign_out()
        try:
            await client.list_reservations()
        except (NotSignedIn, Unauthenticated):
            step("ok: signed out")
        else:
            step("FAILED: still signed in after signing out")
            return 1
    step("smoke test passed")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(smoke(args))
    except BookingError as error:
        print(f"FAILED: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
