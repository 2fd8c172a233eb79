// Resume after a cut, over native gRPC: a keep_running turn, its stream cut after a few events (as a network
// drop would), then ResumeChat from the last sequence seen, on the same address or any other replica. The
// events seen before the cut plus the replay are the whole turn: no gap, no duplicate.
//
// Usage: tsx src/resume.ts [host:port] [message]     (default $BOOKING_GATEWAY_TARGET, else 127.0.0.1:50051)
// The last line of output is `RESULT {json}` for scripts and tests.

import { BookingClient, describeError } from "./client.js";
import type { ChatEvent } from "./gen/booking/v1/chat_pb.js";

const target = process.argv[2] ?? process.env.BOOKING_GATEWAY_TARGET ?? "127.0.0.1:50051";
const message = process.argv[3] ?? "help";
const CUT_AFTER_EVENTS = 3;

async function main(): Promise<void> {
  const client = new BookingClient(target);
  const seen: ChatEvent[] = [];
  let resumeToken = "";
  const cut = new AbortController();
  try {
    const stream = client.chatService.chat({ message, keepRunning: true }, { signal: cut.signal });
    for await (const response of stream) {
      const event = response.event;
      if (event === undefined) continue;
      seen.push(event);
      if (event.kind.case === "sessionStarted") resumeToken = event.kind.value.resumeToken;
      if (seen.length === CUT_AFTER_EVENTS) cut.abort(); // the "network" drops here
    }
  } catch (error) {
    if (!cut.signal.aborted) throw error;
  }
  const sessionId = seen[0]?.kind.case === "sessionStarted" ? seen[0].kind.value.sessionId : "";
  const last = seen.at(-1)?.sequence ?? 0n;
  console.log(`cut after sequence ${last}; resuming session ${sessionId.slice(0, 6)}…`);
  // The turn ran on in the gateway meanwhile. ResumeChat sends what was missed, then follows it to its end.
  const replay = client.chatService.resumeChat({ sessionId, afterSequence: last, resumeToken });
  const rest: ChatEvent[] = [];
  for await (const response of replay) {
    if (response.event !== undefined) rest.push(response.event);
  }
  const all = [...seen, ...rest];
  const text = all.map((e) => (e.kind.case === "textDelta" ? e.kind.value.text : "")).join("");
  console.log(`agent> ${text}`);
  const end = all.at(-1)?.kind;
  console.log(
    `RESULT ${JSON.stringify({
      sequences: all.map((e) => Number(e.sequence)),
      text,
      stopReason: end?.case === "turnComplete" ? end.value.stopReason : null,
    })}`,
  );
}

main().catch((error: unknown) => {
  console.error(describeError(error));
  process.exit(1);
});
