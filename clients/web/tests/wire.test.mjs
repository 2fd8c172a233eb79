// The web face over the wire, from Node with connect-web (what the browser chat uses) on Node's fetch, over
// both protocols. Run by pytest (tests/web/test_wire.py), which starts the gateways, mints tokens, computes
// what the gRPC face answers for the same calls, and writes it all to WIRE_CONFIG.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  PROTOCOLS,
  chatTurn,
  clients,
  errorInfo,
  loadConfig,
  mailboxCode,
  refused,
  retryDelaySeconds,
  text,
} from "./support.mjs";

const config = loadConfig();

describe("the same auth answers as the gRPC face", () => {
  for (const protocol of PROTOCOLS) {
    test(`bearer tokens are judged alike over ${protocol}`, async () => {
      for (const probe of config.tokenCases) {
        const api = clients(config.bearerWebUrl, protocol, { token: probe.token });
        const got = await refused(() => api.reservations.listReservations({}));
        assert.deepEqual({ code: got.code, reason: got.reason }, probe.expect, `${probe.name} over ${protocol}`);
      }
    });

    test(`an optional-auth stream refuses a bad token over ${protocol}`, async () => {
      const expired = config.tokenCases.find((probe) => probe.name === "expired");
      const api = clients(config.bearerWebUrl, protocol, { token: expired.token });
      const got = await refused(async () => {
        for await (const _ of api.chat.chat({ message: "hello" })) {
          // no event may arrive before the refusal
          assert.fail("an event arrived before the auth step refused the call");
        }
      });
      assert.deepEqual({ code: got.code, reason: got.reason }, expired.expect);
    });

    test(`an unknown method is ${config.unknownMethod.expect.reason} over ${protocol}`, async () => {
      const api = clients(config.webUrl, protocol, { rewritePath: "/booking.v1.ReservationService/Nope" });
      const got = await refused(() => api.reservations.listProperties({}));
      assert.deepEqual({ code: got.code, reason: got.reason }, config.unknownMethod.expect);
    });

    test(`every failure carries a request id, and a caller's own is kept, over ${protocol}`, async () => {
      const api = clients(config.bearerWebUrl, protocol, { headers: { "x-request-id": `node-${protocol}` } });
      const got = await refused(() => api.reservations.listReservations({}));
      const echoed = got.error.metadata.get("x-request-id");
      assert.equal(echoed, `node-${protocol}`);
    });
  }
});

describe("origins", () => {
  const rpc = "/booking.v1.ReservationService/ListProperties";
  const contentTypes = { connect: "application/json", "grpc-web": "application/grpc-web+proto" };

  for (const protocol of PROTOCOLS) {
    test(`a request from an origin that is not allowed is refused over ${protocol}`, async () => {
      const response = await fetch(`${config.webUrl}${rpc}`, {
        method: "POST",
        headers: { origin: "http://evil.example", "content-type": contentTypes[protocol] },
        body: protocol === "connect" ? "{}" : new Uint8Array(5),
      });
      assert.equal(response.status, 403);
      assert.equal(response.headers.get("access-control-allow-origin"), null);
    });
  }

  test("a preflight from an origin that is not allowed is refused", async () => {
    const response = await fetch(`${config.webUrl}${rpc}`, {
      method: "OPTIONS",
      headers: {
        origin: "http://evil.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization,content-type",
      },
    });
    assert.equal(response.status, 403);
    assert.equal(response.headers.get("access-control-allow-origin"), null);
  });

  test("a listed origin gets a preflight answer with the Connect and gRPC-Web headers", async () => {
    const asked = [
      "authorization",
      "content-type",
      "connect-protocol-version",
      "connect-timeout-ms",
      "x-grpc-web",
      "x-user-agent",
      "grpc-timeout",
    ];
    const response = await fetch(`${config.corsWebUrl}${rpc}`, {
      method: "OPTIONS",
      headers: {
        origin: config.allowedOrigin,
        "access-control-request-method": "POST",
        "access-control-request-headers": asked.join(","),
      },
    });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("access-control-allow-origin"), config.allowedOrigin);
    assert.match(response.headers.get("access-control-allow-methods") ?? "", /POST/);
    const allowed = (response.headers.get("access-control-allow-headers") ?? "").toLowerCase();
    for (const header of asked) assert.ok(allowed.includes(header), `${header} is allowed`);
  });

  for (const protocol of PROTOCOLS) {
    test(`a listed origin's call is answered with readable status headers over ${protocol}`, async () => {
      const api = clients(config.corsWebUrl, protocol, { headers: { origin: config.allowedOrigin } });
      const answer = await api.reservations.listProperties({});
      assert.ok(answer.properties.length > 0);
      const response = await fetch(`${config.corsWebUrl}${rpc}`, {
        method: "POST",
        headers: { origin: config.allowedOrigin, "content-type": contentTypes[protocol] },
        body: protocol === "connect" ? "{}" : new Uint8Array(5),
      });
      assert.equal(response.status, 200);
      assert.equal(response.headers.get("access-control-allow-origin"), config.allowedOrigin);
      const exposed = (response.headers.get("access-control-expose-headers") ?? "").toLowerCase();
      for (const header of ["grpc-status", "grpc-message", "grpc-status-details-bin", "x-request-id"]) {
        assert.ok(exposed.includes(header), `${header} is exposed`);
      }
    });
  }

  test("the page's own origin needs no listing", async () => {
    const api = clients(config.webUrl, "connect", { headers: { origin: config.webUrl } });
    const answer = await api.reservations.listProperties({});
    assert.ok(answer.properties.length > 0);
  });
});

function newEmail(tag) {
  return `${tag}-${crypto.randomUUID().slice(0, 12)}@example.com`;
}

function wrongCode(code) {
  return [...code].map((digit) => (digit === "1" ? "2" : "1")).join("");
}

/** A stay far enough ahead (and random enough) that no other test holds its nights. */
function futureStay(nights) {
  const start = new Date(Date.now() + (120 + Math.floor(Math.random() * 480)) * 86_400_000);
  const end = new Date(start.getTime() + nights * 86_400_000);
  const iso = (d) => d.toISOString().slice(0, 10);
  return { checkIn: iso(start), checkOut: iso(end) };
}

describe("sign-in errors as the gRPC face gives them", () => {
  for (const protocol of PROTOCOLS) {
    test(`a wrong code is ${config.wrongCode.expect.reason} with the attempts left over ${protocol}`, async () => {
      const api = clients(config.webUrl, protocol);
      const email = newEmail(`wrong-${protocol}`);
      const started = await api.auth.initiateLogin({ email });
      const code = await mailboxCode(config.mailboxUrl, email, 0);
      const got = await refused(() => api.auth.verifyOtp({ loginId: started.loginId, code: wrongCode(code) }));
      assert.deepEqual({ code: got.code, reason: got.reason }, config.wrongCode.expect);
      assert.equal(errorInfo(got.error).metadata.attempts_left, config.wrongCode.attemptsLeft);
      // The right code still works afterwards.
      const answer = await api.auth.verifyOtp({ loginId: started.loginId, code });
      assert.equal(answer.tokenDelivery.email, email);
    });

    test(`asking again for a code too soon is ${config.rateLimited.expect.reason} over ${protocol}`, async () => {
      const api = clients(config.webUrl, protocol);
      const email = newEmail(`again-${protocol}`);
      await api.auth.initiateLogin({ email });
      const got = await refused(() => api.auth.initiateLogin({ email }));
      assert.deepEqual({ code: got.code, reason: got.reason }, config.rateLimited.expect);
      const delay = retryDelaySeconds(got.error);
      assert.ok(delay !== null && delay > 0 && delay <= config.rateLimited.maxDelaySeconds, `retry after ${delay}`);
    });
  }
});

describe("every RPC of the contract", () => {
  for (const protocol of PROTOCOLS) {
    test(`the whole journey over ${protocol}`, async () => {
      let token = "";
      const api = clients(config.webUrl, protocol, { token: () => token });

      // Anyone: a chat turn, then properties and availability.
      const hello = await chatTurn(api, { message: "hello" });
      assert.equal(hello[0].case, "sessionStarted");
      assert.equal(hello[0].value.authenticated, false);
      assert.equal(hello.at(-1).case, "turnComplete");
      assert.equal(hello.at(-1).value.stopReason, 1 /* END_TURN */);
      assert.match(text(hello), /booking assistant/);
      const { properties } = await api.reservations.listProperties({});
      const property = properties.find((p) => p.capacity >= 2) ?? properties[0];
      const stay = { propertyId: property.propertyId, ...futureStay(2), guests: 2 };
      const availability = await api.reservations.checkAvailability(stay);
      assert.equal(availability.nights.length, 2);
      assert.equal(availability.available, true);

      // Sign in with a code from the dev mailbox.
      const email = newEmail(`journey-${protocol}`);
      const started = await api.auth.initiateLogin({ email, name: "Web Journey" });
      const code = await mailboxCode(config.mailboxUrl, email, 0);
      const { tokenDelivery } = await api.auth.verifyOtp({ loginId: started.loginId, code });
      assert.equal(tokenDelivery.tokenType, "Bearer");
      token = tokenDelivery.accessToken;

      // Signed in: book, list, read, cancel.
      const requestId = `web-${protocol}-${crypto.randomUUID()}`.slice(0, 64);
      const { reservation } = await api.reservations.createReservation({ ...stay, requestId });
      assert.equal(reservation.guestId, tokenDelivery.guestId);
      const listed = await api.reservations.listReservations({ pageSize: 10 });
      assert.deepEqual(
        listed.reservations.map((r) => r.reservationId),
        [reservation.reservationId],
      );
      const read = await api.reservations.getReservation({ reservationId: reservation.reservationId });
      assert.equal(read.reservation.checkIn, stay.checkIn);
      const cancelled = await api.reservations.cancelReservation({ reservationId: reservation.reservationId });
      assert.equal(cancelled.reservation.status, 2 /* CANCELLED */);
      const mine = await chatTurn(api, { sessionId: hello[0].value.sessionId, message: "what are my reservations?" });
      assert.equal(mine[0].value.authenticated, true);
      assert.equal(mine[0].value.guestId, tokenDelivery.guestId);
      assert.match(text(mine), new RegExp(reservation.reservationId));

      // Fresh tokens, then sign out: the old access token is refused from then on.
      const refreshed = await api.auth.refreshSession({ refreshToken: tokenDelivery.refreshToken });
      assert.ok(refreshed.accessToken);
      token = refreshed.accessToken;
      await api.auth.signOut({ refreshToken: refreshed.refreshToken || tokenDelivery.refreshToken });
      const after = await refused(() => api.reservations.listReservations({}));
      assert.deepEqual({ code: after.code, reason: after.reason }, { code: "UNAUTHENTICATED", reason: "TOKEN_REVOKED" });
    });
  }
});

describe("cancellation", () => {
  for (const protocol of PROTOCOLS) {
    test(`a stream aborted by the client stops the agent over ${protocol}`, async () => {
      // On this gateway the scripted agent types slowly: its greeting takes several seconds.
      const api = clients(config.slowWebUrl, protocol);
      const controller = new AbortController();
      let sessionId = "";
      let lastSequence = -1n;
      const got = await refused(async () => {
        for await (const response of api.chat.chat({ message: "hello" }, { signal: controller.signal })) {
          const kind = response.event.kind;
          if (kind.case === "sessionStarted") sessionId = kind.value.sessionId;
          lastSequence = response.event.sequence;
          if (kind.case === "textDelta") controller.abort();
        }
      });
      assert.equal(got.code, "CANCELLED");
      assert.ok(sessionId);
      // Turns of one session never overlap: had the agent kept typing, the next turn would wait for it and run
      // out of its deadline. It starts at once, after the events the client saw.
      let first;
      for await (const response of api.chat.chat({ sessionId, message: "thanks" }, { timeoutMs: 3000 })) {
        first = response.event;
        break; // leaving the loop cancels this stream too
      }
      assert.equal(first.kind.case, "sessionStarted");
      assert.equal(first.kind.value.resumed, true);
      assert.ok(first.sequence > lastSequence);
    });
  }
});
