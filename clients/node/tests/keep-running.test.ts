// BookingClient keeps its turns running (keep_running) and resumes them after a dropped connection: a message's
// turn and an approval decision's turn alike. Each test runs the client through a loopback TCP proxy of its own
// and cuts every open connection mid-turn, as a network drop would.
//
// Run by tests/interop/test_node_client.py: `tsx --test tests/keep-running.test.ts` with KEEP_RUNNING_CONFIG
// naming a JSON file {target, accessToken, propertyName, stay} (a gateway that types slowly, a signed-in
// person's access token, a property of the test's own and a free stay there).

import { strict as assert } from "node:assert";
import { readFileSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { after, before, test } from "node:test";
import { BookingClient, type Reconnecting } from "../src/client.js";
import { StopReason, type ChatEvent } from "../src/gen/booking/v1/chat_pb.js";

interface Config {
  target: string;
  accessToken: string;
  propertyName: string;
  stay: string;
}

const config = JSON.parse(readFileSync(process.env.KEEP_RUNNING_CONFIG ?? "", "utf8")) as Config;
const HELP = "help, what can you do";

/** Forwards 127.0.0.1:<port> to the gateway; `cut()` closes every connection open now (new ones still work). */
class CuttableProxy {
  readonly sockets = new Set<Socket>();
  connections = 0;
  private readonly server: Server;

  constructor(upstream: string) {
    const [host, port] = [upstream.slice(0, upstream.lastIndexOf(":")), Number(upstream.split(":").at(-1))];
    this.server = createServer((client) => {
      this.connections += 1;
      const gateway = createConnection({ host, port });
      for (const [from, to] of [
        [client, gateway],
        [gateway, client],
      ] as const) {
        this.sockets.add(from);
        from.pipe(to);
        from.on("error", () => to.destroy());
        from.on("close", () => {
          this.sockets.delete(from);
          to.destroy();
        });
      }
    });
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    const address = this.server.address();
    if (address === null || typeof address === "string") throw new Error("the proxy has no port");
    return `127.0.0.1:${address.port}`;
  }

  cut(): void {
    for (const socket of this.sockets) socket.resetAndDestroy();
    this.sockets.clear();
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

let proxy: CuttableProxy;
let proxied: string;

before(async () => {
  proxy = new CuttableProxy(config.target);
  proxied = await proxy.listen();
});

after(async () => {
  await proxy.close();
});

function client(reconnects: Reconnecting[], signedIn = false): BookingClient {
  const made = new BookingClient(proxied, {
    resumeBackoff: { firstMs: 50, maxMs: 500, attempts: 8 },
    onReconnecting: (reconnecting) => reconnects.push(reconnecting),
  });
  if (signedIn) {
    made.session = {
      accessToken: config.accessToken,
      idToken: "",
      refreshToken: "",
      expiresAt: new Date(Date.now() + 3_600_000),
      guestId: "",
      email: "",
      sub: "",
    };
  }
  return made;
}

/** Read a turn, cutting the connection once `cutWhen` says so; the events as yielded. */
async function readCutting(turn: AsyncGenerator<ChatEvent>, cutWhen: (seen: ChatEvent[]) => boolean): Promise<ChatEvent[]> {
  const seen: ChatEvent[] = [];
  let cut = false;
  for await (const event of turn) {
    seen.push(event);
    if (!cut && cutWhen(seen)) {
      cut = true;
      proxy.cut();
    }
  }
  return seen;
}

function assertWholeTurn(events: ChatEvent[]): void {
  const sequences = events.map((event) => Number(event.sequence));
  assert.deepEqual(sequences, sequences.map((_, i) => (sequences[0] ?? 0) + i), "each event once, none missed");
  assert.equal(events[0]?.kind.case, "sessionStarted");
  const end = events.at(-1)?.kind;
  assert.equal(end?.case, "turnComplete");
}

const text = (events: ChatEvent[]): string =>
  events.map((event) => (event.kind.case === "textDelta" ? event.kind.value.text : "")).join("");

test("a message's turn survives a dropped connection: resumed, whole, each event once", async () => {
  const plain = new BookingClient(config.target, { keepRunning: false });
  const reference = text((await plain.say(HELP)).events);
  const reconnects: Reconnecting[] = [];
  const connectionsBefore = proxy.connections;
  const events = await readCutting(
    client(reconnects).chat(HELP),
    (seen) => seen.filter((event) => event.kind.case === "textDelta").length === 3,
  );
  assert.ok(reconnects.length >= 1, "the client reconnected");
  assert.ok(proxy.connections >= connectionsBefore + 2, "over a new connection");
  assertWholeTurn(events);
  assert.equal(text(events), reference);
});

test("a decision's turn survives a dropped connection like a message's: the booking is made once", async () => {
  const reconnects: Reconnecting[] = [];
  const person = client(reconnects, true);
  const asked = (await person.say(`book the ${config.propertyName} for 2 guests ${config.stay}`)).events;
  const approval = person.pendingApproval;
  assert.ok(approval !== undefined, `no approval asked: ${text(asked)}`);
  assert.equal(reconnects.length, 0);
  const events = await readCutting(person.decide(approval.approvalId, true), (seen) => seen.length === 1);
  assert.ok(reconnects.length >= 1, "the client reconnected");
  assertWholeTurn(events);
  const end = events.at(-1)?.kind;
  assert.ok(end?.case === "turnComplete" && end.value.stopReason === StopReason.END_TURN, "END_TURN");
  const booked = events.flatMap((event) =>
    event.kind.case === "toolCallFinished" && event.kind.value.name === "create_reservation" ? [event.kind.value.ok] : [],
  );
  assert.deepEqual(booked, [true]);
  const page = await person.reservations.listReservations({ pageSize: 20 });
  assert.equal(page.reservations.length, 1);
});

test("cancel() stops the kept turn, and leaving the loop early stops it too, so the next message does not wait", async () => {
  const person = client([]);
  const stopped: ChatEvent[] = [];
  for await (const event of person.chat(HELP)) {
    stopped.push(event);
    if (event.kind.case === "textDelta" && stopped.length === 3) assert.equal(await person.cancel(), true);
  }
  const end = stopped.at(-1)?.kind;
  assert.ok(end?.case === "turnComplete" && end.value.stopReason === StopReason.CANCELLED, "CANCELLED");
  assert.equal(await person.cancel(), false, "no turn runs any more");

  let left: { sessionId: string; resumeToken: string; sequence: bigint } | undefined;
  for await (const event of person.chat(HELP)) {
    if (event.kind.case === "sessionStarted") {
      left = { sessionId: event.kind.value.sessionId, resumeToken: event.kind.value.resumeToken, sequence: 0n };
    }
    if (left !== undefined) left.sequence = event.sequence;
    if (event.kind.case === "textDelta") break;
  }
  assert.ok(left !== undefined);
  const rest: ChatEvent[] = [];
  for await (const response of person.chatService.resumeChat({ ...left, afterSequence: left.sequence })) {
    if (response.event !== undefined) rest.push(response.event);
  }
  const cancelled = rest.at(-1)?.kind;
  assert.ok(cancelled?.case === "turnComplete" && cancelled.value.stopReason === StopReason.CANCELLED, "CANCELLED");
  const next = (await person.say("hello")).events.at(-1)?.kind;
  assert.ok(next?.case === "turnComplete" && next.value.stopReason === StopReason.END_TURN, "the next turn ran");
});
