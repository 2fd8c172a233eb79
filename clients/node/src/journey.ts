// The seed's user journey against a running gateway, over native gRPC:
//   anonymous chat -> ask to book -> name and email -> the emailed code -> TokenDelivery on the stream
//   -> the gateway asks to approve the booking (approvalRequested) -> approve (a decision, not a message)
//   -> "what are my reservations" in the chat with the bearer -> ListReservations with the bearer.
//
// Usage: tsx src/journey.ts [host:port]     (default $BOOKING_GATEWAY_TARGET, else 127.0.0.1:50051)
// Environment: JOURNEY_EMAIL (default a fresh address), JOURNEY_STAY (default "March 15-20"), JOURNEY_CODE
// (else the code is read from stdin, one line, after the script prints "waiting for the sign-in code"),
// BOOKING_TLS=1 and BOOKING_CA_FILE for TLS.
// The last line of output is `RESULT {json}` for scripts and tests.

import { randomBytes } from "node:crypto";
import { createInterface } from "node:readline";
import { BookingClient, describeError } from "./client.js";
import { ReservationStatus } from "./gen/booking/v1/reservations_pb.js";
import type { ChatEvent } from "./gen/booking/v1/chat_pb.js";

const target = process.argv[2] ?? process.env.BOOKING_GATEWAY_TARGET ?? "127.0.0.1:50051";
const email = process.env.JOURNEY_EMAIL ?? `node-${randomBytes(5).toString("hex")}@example.com`;
const stay = process.env.JOURNEY_STAY ?? "March 15-20";
const log = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

/** A step of the journey that the gateway answered but that did not do what the journey needs. */
class StepFailed extends Error {}

async function readCode(): Promise<string> {
  const fromEnv = process.env.JOURNEY_CODE;
  if (fromEnv) return fromEnv.trim();
  log(`waiting for the sign-in code sent to ${email} (one line on stdin)`);
  process.stdout.write("code: ");
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    lines.close();
    return line.trim();
  }
  throw new Error("stdin ended before a code arrived");
}

function sessionStarted(events: ChatEvent[]): { authenticated: boolean; guestId: string } {
  const first = events[0];
  if (first?.kind.case !== "sessionStarted") throw new Error("the turn did not start with SessionStarted");
  return { authenticated: first.kind.value.authenticated, guestId: first.kind.value.guestId };
}

async function main(): Promise<void> {
  const client = new BookingClient(target, {
    tls: process.env.BOOKING_TLS === "1",
    caFile: process.env.BOOKING_CA_FILE,
  });
  const say = async (message: string): Promise<ChatEvent[]> => {
    log(`> ${message}`);
    const { text, events } = await client.say(message, log);
    log(`agent> ${text}`);
    // A step that failed fails the journey (exit 1): a tool the agent ran reported an error.
    for (const event of events) {
      if (event.kind.case === "toolCallFinished" && !event.kind.value.ok) {
        throw new StepFailed(`${event.kind.value.name} failed: ${event.kind.value.summary}`);
      }
    }
    return events;
  };

  const first = await say(`what's available ${stay}?`);
  const anonymous = !sessionStarted(first).authenticated;
  await say("book the Harbor Loft for 2 guests");
  await say(`My name is Node Journey, my email is ${email}`);
  const code = await readCode();
  const verified = await say(code);
  const tokenDelivered = verified.some((event) => event.kind.case === "tokenDelivery");
  if (client.session === undefined) throw new Error("no TokenDelivery arrived on the chat stream");
  // The booking waits for the person's decision: the gateway's own summary, then approve it.
  const approval = client.pendingApproval;
  // No question: the agent found the stay taken (it checks before holding a booking), a failed step too.
  if (approval === undefined) throw new StepFailed("the agent did not ask to approve the booking");
  log(`approve> ${approval.summary}? yes`);
  const approved = await client.answer(approval.approvalId, true, log);
  log(`agent> ${approved.text}`);
  const mine = await say("what are my reservations?");
  const chatAuthenticated = sessionStarted(mine).authenticated;

  const page = await client.reservations.listReservations({ pageSize: 20 });
  for (const reservation of page.reservations) {
    log(
      `  ${reservation.reservationId} ${reservation.propertyName} ${reservation.checkIn} -> ${reservation.checkOut} ` +
        `${ReservationStatus[reservation.status]}`,
    );
  }
  const result = {
    target,
    anonymous,
    tokenDelivered,
    approvalSummary: approval.summary,
    signedInAs: client.session.email,
    guestId: client.session.guestId,
    chatAuthenticated,
    chatSessionId: client.chatSessionId,
    reservations: page.reservations.map((reservation) => ({
      reservationId: reservation.reservationId,
      propertyId: reservation.propertyId,
      checkIn: reservation.checkIn,
      checkOut: reservation.checkOut,
      guests: reservation.guests,
      status: ReservationStatus[reservation.status],
      guestId: reservation.guestId,
    })),
  };
  log(`RESULT ${JSON.stringify(result)}`);
}

main().catch((error: unknown) => {
  const why = error instanceof StepFailed ? error.message : describeError(error);
  process.stderr.write(`journey failed: ${why}\n`);
  process.exit(1);
});
