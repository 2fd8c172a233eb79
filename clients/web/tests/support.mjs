// Shared by the Node tests: clients of the web face over connect-web (the browser's library) on Node's fetch,
// for both protocols, and helpers to read errors the way the gRPC face's tests do (status name + reason).

import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { chromium } from "playwright-core";
import { AuthService } from "../src/gen/booking/v1/auth_pb.js";
import { ChatService } from "../src/gen/booking/v1/chat_pb.js";
import { ReservationService } from "../src/gen/booking/v1/reservations_pb.js";
import { ErrorInfoSchema, RetryInfoSchema } from "../src/gen/google/rpc/error_details_pb.js";

export const PROTOCOLS = ["connect", "grpc-web"];

/** The test's configuration, written by the pytest side (WIRE_CONFIG names the file). */
export function loadConfig() {
  const path = process.env.WIRE_CONFIG;
  if (!path) throw new Error("WIRE_CONFIG is not set: these tests are run by pytest (tests/web/test_wire.py)");
  return JSON.parse(readFileSync(path, "utf8"));
}

/**
 * Clients of the three services over one protocol. `token` (a string or a function returning one) is sent as
 * the bearer; `rewritePath` lets a test call a path the contract does not have.
 */
export function clients(baseUrl, protocol, { token, rewritePath, headers } = {}) {
  const bearer = (next) => async (req) => {
    const value = typeof token === "function" ? token() : token;
    if (value) req.header.set("authorization", `Bearer ${value}`);
    for (const [key, v] of Object.entries(headers ?? {})) req.header.set(key, v);
    return next(req);
  };
  const fetchVia = rewritePath
    ? (input, init) => {
        const url = new URL(typeof input === "string" ? input : input.url);
        url.pathname = rewritePath;
        return globalThis.fetch(url, init);
      }
    : undefined;
  const options = { baseUrl, useBinaryFormat: true, interceptors: [bearer], ...(fetchVia && { fetch: fetchVia }) };
  const transport = protocol === "grpc-web" ? createGrpcWebTransport(options) : createConnectTransport(options);
  return {
    auth: createClient(AuthService, transport),
    chat: createClient(ChatService, transport),
    reservations: createClient(ReservationService, transport),
  };
}

/** grpc's spelling of a Connect code: Code.InvalidArgument -> "INVALID_ARGUMENT". */
export function codeName(code) {
  if (code === Code.Canceled) return "CANCELLED";
  return Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

/** What most assertions compare: { code, reason } of a failed call. */
export function failure(error) {
  const connectError = ConnectError.from(error);
  const info = connectError.findDetails(ErrorInfoSchema)[0];
  return { code: codeName(connectError.code), reason: info?.reason ?? "" };
}

export function errorInfo(error) {
  return ConnectError.from(error).findDetails(ErrorInfoSchema)[0];
}

export function retryDelaySeconds(error) {
  const delay = ConnectError.from(error).findDetails(RetryInfoSchema)[0]?.retryDelay;
  return delay ? Number(delay.seconds) + delay.nanos / 1e9 : null;
}

/** Run `call`; it must fail. Returns { code, reason } (and the error as `error`). */
export async function refused(call) {
  try {
    await call();
  } catch (error) {
    return { ...failure(error), error };
  }
  throw new Error("the call succeeded but was expected to fail");
}

/** The next code the dev mailbox received for `email` after `after` codes (served by the pytest side). */
export async function mailboxCode(mailboxUrl, email, after) {
  const url = `${mailboxUrl}/code?email=${encodeURIComponent(email)}&after=${after}`;
  const response = await fetch(url, { signal: AbortSignal.timeout(15_000) });
  if (!response.ok) throw new Error(`mailbox answered ${response.status}: ${await response.text()}`);
  return (await response.text()).trim();
}

/** Every event of one chat turn, as { case, value } pairs. */
export async function chatTurn(client, request, options = {}) {
  const events = [];
  for await (const response of client.chat.chat(request, options)) {
    const kind = response.event?.kind;
    if (kind?.case) events.push({ case: kind.case, value: kind.value });
  }
  return events;
}

export function text(events) {
  return events
    .filter((e) => e.case === "textDelta")
    .map((e) => e.value.text)
    .join("");
}

/**
 * Sign in with the page's form as a person does: the email, the code the dev mailbox received (after `after`
 * earlier codes), until the page says who is signed in. `page` is a playwright page of the browser chat.
 */
export async function signInWithForm(page, config, { after = 0, timeout = 20_000 } = {}) {
  const byTestId = (id) => page.locator(`[data-testid="${id}"]`);
  await byTestId("signin-button").click();
  await byTestId("login-email").fill(config.email);
  await byTestId("login-email").press("Enter");
  await byTestId("code-sent").getByText(/We sent a code to/).waitFor({ timeout });
  await byTestId("login-code").fill(await mailboxCode(config.mailboxUrl, config.email, after));
  await byTestId("code-submit").click();
  await byTestId("auth-status").getByText(`Signed in as ${config.email}`).waitFor({ timeout });
}

/** Print a scenario's step, so that a failure's output says where it happened. */
export function step(name) {
  console.log(`- ${name}`);
}

/**
 * What the chat page shows, for a playwright `page` of the browser chat: `byTestId(id)`, `turns()` (the turns the
 * chat form has finished) and `waitTurns(n)` (until at least n have, within `wait`).
 */
export function chatPage(page, wait) {
  const byTestId = (id) => page.locator(`[data-testid="${id}"]`);
  const turns = async () => Number((await byTestId("chat-form").getAttribute("data-turns")) ?? "0");
  const waitTurns = (count) =>
    page.waitForFunction(
      (n) => Number(document.querySelector('[data-testid="chat-form"]').dataset.turns ?? "0") >= n,
      count,
      wait,
    );
  return { byTestId, turns, waitTurns };
}

/** A phone's viewport, as the journeys use. */
export const PHONE = { width: 390, height: 844 };

/**
 * Debian's Chromium (`config.chromium`) headless, with a profile of its own in a temporary folder; `close()` ends
 * it and removes the profile. `viewport` as playwright takes it (its default when not given).
 */
export async function openBrowser(config, { viewport } = {}) {
  const profile = mkdtempSync(join(tmpdir(), "booking-chat-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: config.chromium,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-sync"],
    ...(viewport && { viewport }),
  });
  const close = async () => {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, close };
}
