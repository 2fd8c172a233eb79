// The browser chat when a call fails (Debian's Chromium, playwright-core). Run by pytest
// (tests/web/test_browser_recovery.py), which starts the gateway; WIRE_CONFIG's `scenario` says which:
//
// "approval": the booking's card is open; Approve while the gateway cannot be reached -> the card is open again,
// both buttons work, an error says what happened -> a message that cannot be sent leaves the card open too (it is
// not withdrawn) -> Approve again, reaching the gateway but its answer cut -> the card is open again, saying the
// decision may not have got there and deciding again is safe -> Approve again -> refused as already used: the card
// says it was already answered and to check My reservations, where the booking is.
//
// "token": a stored session whose access token has expired (the page thinks it has an hour left), its refresh
// token good -> "My reservations": renewed and retried, still signed in -> again, with RefreshSession unreachable:
// still signed in, an error with a Retry that works -> a chat message, the same -> a refresh token the gateway
// refuses: signed out, and said so.
//
// "resume" (the agent types slowly): a reload mid-answer whose kept resume token is wrong -> the gateway refuses
// the resume (RESUME_TOKEN_INVALID): an error at once, the kept turn forgotten -> an answer whose stream is cut
// (offline, then online) nine times, each time after more of it arrived: it is resumed every time, no error.
//
// "giveup" (the agent types slowly): a reload mid-answer while ResumeChat cannot reach the gateway -> after 8
// attempts the page says the connection keeps dropping, forgets the kept turn (a reload does not try again) and
// offers a Retry -> Retry, the gateway reachable: the answer goes on.
//
// "resumetoken" (the agent types slowly, signed in): a reload mid-answer with the stored access token expired ->
// ResumeChat is refused (TOKEN_EXPIRED), the session renewed once, the answer goes on -> again with RefreshSession
// unreachable: said at once (no 8 attempts), still signed in, a Retry that resumes -> again with a refresh token the
// gateway refuses: signed out, and said so.
//
// "stop" (the agent types slowly): offline mid-answer, Stop pressed while "Reconnecting…", online again -> the
// turn is stopped ("Stopped."), in the gateway too (its stream ends CANCELLED).
//
// "budget" (each client may spend one model token a day): messages until the gateway refuses one with
// TOKEN_BUDGET_EXHAUSTED -> the page says today's allowance is used up and when it renews (00:00 UTC, in local
// time), with no Retry.
//
// Failures that never reach the gateway are made with page.route (the request is refused at the browser's wire).

import assert from "node:assert/strict";
import { StopReason } from "../src/gen/booking/v1/chat_pb.js";
import { PHONE, chatPage, clients, loadConfig, openBrowser, signInWithForm, step } from "./support.mjs";

const config = loadConfig();
const WAIT = { timeout: 20_000 };
const { context, close } = await openBrowser(config, { viewport: PHONE });
const problems = [];

const page = context.pages()[0] ?? (await context.newPage());
page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
const { byTestId, turns, waitTurns } = chatPage(page, WAIT);
const CHAT = /\/booking\.v1\.ChatService\/Chat$/;

async function send(text) {
  await byTestId("chat-input").fill(text);
  await byTestId("send-button").click();
}

async function approval() {
  await page.goto(config.webUrl);
  await signInWithForm(page, config);
  let before = await turns();
  await send(`book the ${config.propertyName} for 2 guests ${config.checkIn} to ${config.checkOut}`);
  await waitTurns(before + 1);
  const card = byTestId("approval-card").last();
  await card.waitFor(WAIT);
  assert.equal(await card.getAttribute("data-state"), "open");
  const approve = card.locator('[data-testid="approve-button"]');
  const decline = card.locator('[data-testid="decline-button"]');

  step("Approve while the gateway cannot be reached: the card is open again, with the error");
  await page.route(CHAT, (route) => route.abort("connectionrefused"));
  before = await turns();
  await approve.click();
  await waitTurns(before + 1);
  await byTestId("error-banner").waitFor({ state: "visible", ...WAIT });
  assert.equal(await card.getAttribute("data-state"), "open");
  assert.equal(await approve.isEnabled(), true);
  assert.equal(await decline.isEnabled(), true);
  assert.match(await card.locator('[data-testid="approval-status"]').innerText(), /may not have reached/);
  const kept = await page.evaluate(() => JSON.parse(sessionStorage.getItem("booking_transcript") ?? "[]"));
  assert.equal(kept.filter((e) => e.role === "approval" && e.state === "open").length, 1, "kept open for a reload");

  step("a message that cannot be sent does not withdraw the card");
  before = await turns();
  await send("hello");
  await waitTurns(before + 1);
  await byTestId("error-banner").waitFor({ state: "visible", ...WAIT });
  assert.equal(await card.getAttribute("data-state"), "open");
  assert.equal(await approve.isEnabled(), true);

  step("Approve again: the gateway takes it (and books) but the answer is cut: the card is open again");
  await page.unroute(CHAT);
  await page.route(CHAT, async (route) => {
    await route.fetch(); // the whole turn, run by the gateway
    await route.abort("connectionreset");
  });
  before = await turns();
  await approve.click();
  await waitTurns(before + 1);
  assert.equal(await card.getAttribute("data-state"), "open");
  assert.match(await card.locator('[data-testid="approval-status"]').innerText(), /Deciding again is safe/);

  step("Approve again, reachable: refused as already used; the card says so and points to My reservations");
  await page.unroute(CHAT);
  before = await turns();
  await approve.click();
  await waitTurns(before + 1);
  assert.equal(await card.getAttribute("data-state"), "answered");
  assert.match(await card.locator('[data-testid="approval-status"]').innerText(), /Already answered.*My reservations/);
  assert.equal(await approve.isDisabled(), true);
  assert.equal(await byTestId("error-banner").isVisible(), false);
  await byTestId("reservations-button").click();
  await byTestId("reservation-item").first().waitFor(WAIT);
  assert.equal(await byTestId("reservation-item").count(), 1, "booked once");
}

async function token() {
  const REFRESH = /\/booking\.v1\.AuthService\/RefreshSession$/;
  const storedSession = () => page.evaluate(() => JSON.parse(localStorage.getItem("booking_session") ?? "null"));
  /** Store the session with the expired access token (and `changes`) as if it had an hour left; reload. */
  async function expiredSession(changes = {}) {
    await page.evaluate(
      (session) => localStorage.setItem("booking_session", JSON.stringify({ ...session, expiresAt: Date.now() + 3_600_000 })),
      { ...config.session, accessToken: config.expiredAccessToken, ...changes },
    );
    await page.reload();
    await byTestId("auth-status").getByText(`Signed in as ${config.session.email}`).waitFor(WAIT);
  }
  const signedIn = async () => (await byTestId("auth-status").innerText()) === `Signed in as ${config.session.email}`;
  await page.goto(config.webUrl);

  step("My reservations with an expired access token: renewed and retried, still signed in");
  await expiredSession();
  await byTestId("reservations-button").click();
  await byTestId("reservations-empty").waitFor({ state: "visible", ...WAIT });
  assert.equal(await byTestId("error-banner").isVisible(), false);
  assert.ok(await signedIn());
  const renewed = await storedSession();
  assert.ok(renewed && renewed.accessToken !== config.expiredAccessToken, "a new access token is stored");
  await byTestId("reservations-close").click();

  step("the same while RefreshSession cannot be reached: still signed in, a Retry that works");
  await expiredSession();
  await page.route(REFRESH, (route) => route.abort("connectionrefused"));
  await byTestId("reservations-button").click();
  await byTestId("error-banner").waitFor({ state: "visible", ...WAIT });
  assert.equal(await byTestId("retry-button").isVisible(), true);
  assert.ok(await signedIn());
  assert.equal((await storedSession())?.refreshToken, config.session.refreshToken, "the session is kept");
  await page.unroute(REFRESH);
  await byTestId("retry-button").click();
  await byTestId("reservations-empty").waitFor({ state: "visible", ...WAIT });
  assert.equal(await byTestId("error-banner").isVisible(), false);
  assert.ok(await signedIn());
  await byTestId("reservations-close").click();

  step("a chat message while RefreshSession cannot be reached: still signed in; Retry sends it");
  await expiredSession();
  await page.route(REFRESH, (route) => route.abort("connectionrefused"));
  let before = await turns();
  await send("hello");
  await waitTurns(before + 1);
  await byTestId("error-banner").waitFor({ state: "visible", ...WAIT });
  assert.equal(await byTestId("retry-button").isVisible(), true);
  assert.ok(await signedIn());
  await page.unroute(REFRESH);
  const replies = await byTestId("assistant-message").count();
  before = await turns();
  await byTestId("retry-button").click();
  await waitTurns(before + 1);
  assert.equal(await byTestId("error-banner").isVisible(), false);
  assert.ok((await byTestId("assistant-message").count()) > replies, "the message is answered");
  assert.ok(await signedIn());

  step("a refresh token the gateway refuses: signed out, and said so");
  await expiredSession({ refreshToken: "not-a-refresh-token" });
  await byTestId("reservations-button").click();
  await byTestId("auth-status").getByText("Not signed in").waitFor(WAIT);
  await byTestId("error-text").getByText(/sign in again/).waitFor(WAIT);
  assert.equal(await storedSession(), null);
}

const streamingReply = () =>
  page.evaluate(() => {
    const replies = [...document.querySelectorAll('[data-testid="assistant-message"]')];
    const last = replies.at(-1);
    return last?.dataset.state === "streaming" ? last.textContent.length : -1;
  });
/** Until the reply being streamed is longer than `length` characters. */
const grown = (length) =>
  page.waitForFunction(
    (n) => {
      const last = [...document.querySelectorAll('[data-testid="assistant-message"]')].at(-1);
      return last?.dataset.state === "streaming" && last.textContent.length > n;
    },
    length,
    WAIT,
  );
const keptTurn = () => page.evaluate(() => JSON.parse(sessionStorage.getItem("booking_turn") ?? "null"));

/** A new conversation on a fresh page (the agent's earlier turn may still be running in the old one). */
async function freshConversation() {
  await page.goto(config.webUrl);
  await page.evaluate(() => {
    localStorage.removeItem("booking_chat_session");
    sessionStorage.clear();
  });
  await page.reload();
}

/** Cut the stream (the browser goes offline), wait for "Reconnecting…", come back online. */
async function cut() {
  await context.setOffline(true);
  await page.locator('[data-state="reconnecting"]').waitFor(WAIT);
  await context.setOffline(false);
}

async function resume() {
  step("a reload mid-answer whose kept resume token is wrong: the refusal is said at once, the turn forgotten");
  await freshConversation();
  await send(config.message);
  await grown(0);
  // Changed while no page of the chat runs (a page on the same origin), so that nothing writes it back.
  await page.goto(new URL("/healthz", config.webUrl).href);
  await page.evaluate(() => {
    const turn = JSON.parse(sessionStorage.getItem("booking_turn"));
    sessionStorage.setItem("booking_turn", JSON.stringify({ ...turn, resumeToken: `${turn.resumeToken}x` }));
  });
  let resumes = 0;
  const counting = (request) => {
    if (request.url().endsWith("/booking.v1.ChatService/ResumeChat")) resumes += 1;
  };
  page.on("request", counting);
  await page.goto(config.webUrl);
  await byTestId("error-banner").waitFor({ state: "visible", ...WAIT });
  page.off("request", counting);
  assert.equal(resumes, 1, "no retries of a resume that cannot succeed");
  assert.match(await byTestId("error-text").innerText(), /can't be followed any more/);
  assert.equal(await byTestId("retry-button").isVisible(), false);
  assert.equal(await keptTurn(), null, "the kept turn is forgotten");
  assert.equal(await page.locator('[data-state="reconnecting"]').count(), 0);

  step("an answer cut nine times, each time after more of it arrived: resumed every time");
  await freshConversation();
  const before = await turns();
  await send(config.message);
  await grown(0);
  for (let i = 0; i < 9; i++) {
    const length = await streamingReply();
    await cut();
    await grown(length);
  }
  await grown(await streamingReply());
  assert.equal(await byTestId("error-banner").isVisible(), false);
  assert.equal(await turns(), before, "the turn is still being shown");
  await byTestId("send-button").click(); // Stop
  await waitTurns(before + 1);
}

async function giveup() {
  const RESUME = /\/booking\.v1\.ChatService\/ResumeChat$/;
  await freshConversation();
  await send(config.message);
  await grown(0);
  const length = await streamingReply();

  step("a reload mid-answer while ResumeChat cannot reach the gateway: after 8 attempts, said, the turn forgotten");
  await page.route(RESUME, (route) => route.abort("connectionrefused"));
  await page.reload();
  // 8 attempts backing off from 250 ms to 5 s: about 17 s.
  await byTestId("error-text").getByText(/keeps dropping/).waitFor({ timeout: 40_000 });
  assert.equal(await keptTurn(), null, "a reload does not try again");
  assert.equal(await page.locator('[data-state="reconnecting"]').count(), 0);
  assert.equal(await byTestId("retry-button").isVisible(), true);

  step("Retry with the gateway reachable: the answer goes on");
  await page.unroute(RESUME);
  const before = await turns();
  await byTestId("retry-button").click();
  await grown(length);
  await byTestId("send-button").click(); // Stop
  await waitTurns(before + 1);
}

async function resumetoken() {
  const REFRESH = /\/booking\.v1\.AuthService\/RefreshSession$/;
  const signedIn = byTestId("auth-status").getByText(`Signed in as ${config.session.email}`);
  const stored = () => page.evaluate(() => JSON.parse(localStorage.getItem("booking_session") ?? "null"));
  const calls = { resume: 0, refresh: 0 };
  page.on("request", (request) => {
    if (request.url().endsWith("/booking.v1.ChatService/ResumeChat")) calls.resume += 1;
    if (REFRESH.test(request.url())) calls.refresh += 1;
  });
  /** Away from the chat, store the expired access token (and `changes`) as if it had an hour left; come back. */
  async function reloadExpired(changes = {}) {
    await page.goto(new URL("/healthz", config.webUrl).href);
    await page.evaluate(
      (changed) => {
        const session = JSON.parse(localStorage.getItem("booking_session"));
        localStorage.setItem("booking_session", JSON.stringify({ ...session, ...changed, expiresAt: Date.now() + 3_600_000 }));
      },
      { accessToken: config.expiredAccessToken, ...changes },
    );
    calls.resume = 0;
    calls.refresh = 0;
    await page.goto(config.webUrl);
  }
  await page.goto(config.webUrl);
  await page.evaluate((session) => localStorage.setItem("booking_session", JSON.stringify({ ...session, expiresAt: Date.now() + 3_600_000 })), config.session);
  await freshConversation();
  await signedIn.waitFor(WAIT);
  await send(config.message);
  await grown(0);

  step("a reload mid-answer with an expired access token: renewed once, the answer goes on");
  let length = await streamingReply();
  await reloadExpired();
  await grown(length);
  assert.deepEqual(calls, { resume: 2, refresh: 1 }, "refused once, renewed, resumed");
  assert.equal(await byTestId("error-banner").isVisible(), false);
  assert.notEqual((await stored())?.accessToken, config.expiredAccessToken, "the renewed token is stored");
  await signedIn.waitFor(WAIT);

  step("the same while RefreshSession cannot be reached: said at once, still signed in, Retry resumes");
  length = await streamingReply();
  await page.route(REFRESH, (route) => route.abort("connectionrefused"));
  await reloadExpired();
  await byTestId("error-banner").waitFor({ state: "visible", ...WAIT });
  assert.equal(calls.resume, 1, "no retries with the expired token");
  assert.match(await byTestId("error-text").innerText(), /sign-in needs renewing/);
  assert.equal(await byTestId("retry-button").isVisible(), true);
  await signedIn.waitFor(WAIT);
  await page.unroute(REFRESH);
  await byTestId("retry-button").click();
  await grown(length);
  assert.equal(await byTestId("error-banner").isVisible(), false);

  step("a refresh token the gateway refuses: signed out, and said so");
  await reloadExpired({ refreshToken: "not-a-refresh-token" });
  await byTestId("auth-status").getByText("Not signed in").waitFor(WAIT);
  await byTestId("error-text").getByText(/sign in again/).waitFor(WAIT);
  assert.equal(calls.resume, 1);
  assert.equal(await stored(), null);
  assert.equal(await keptTurn(), null, "the kept turn is forgotten");
}

async function stop() {
  await freshConversation();
  const before = await turns();
  await send(config.message);
  await grown(0);
  const kept = await keptTurn();
  assert.ok(kept?.resumeToken, "a kept turn");

  step("offline mid-answer, Stop pressed while reconnecting, online again: stopped");
  await context.setOffline(true);
  await page.locator('[data-state="reconnecting"]').waitFor(WAIT);
  await byTestId("send-button").click(); // Stop
  await context.setOffline(false);
  await waitTurns(before + 1);
  await byTestId("notice").filter({ hasText: "Stopped." }).last().waitFor(WAIT);
  assert.ok(!(await byTestId("assistant-message").last().innerText()).includes("one-time code"), "not the whole answer");
  assert.equal(await keptTurn(), null);
  assert.equal(await byTestId("error-banner").isVisible(), false);

  step("the turn is stopped in the gateway: its stream ends CANCELLED");
  const { chat } = clients(config.webUrl, "connect");
  let ending = null;
  const request = { sessionId: kept.sessionId, afterSequence: 0n, resumeToken: kept.resumeToken };
  for await (const response of chat.resumeChat(request, { timeoutMs: 15_000 })) {
    if (response.event?.kind.case === "turnComplete") ending = response.event.kind.value.stopReason;
  }
  assert.equal(ending, StopReason.CANCELLED);
}

async function budget() {
  await page.goto(config.webUrl);
  step("messages until the day's budget is spent: said in words, when it renews, no Retry");
  for (let i = 0; i < 3 && !(await byTestId("error-banner").isVisible()); i++) {
    const before = await turns();
    await send("hello");
    await waitTurns(before + 1);
  }
  const text = await byTestId("error-text").innerText();
  assert.match(text, /used up today's allowance/);
  const midnight = await page.evaluate(() =>
    new Date(Math.floor(Date.now() / 86_400_000 + 1) * 86_400_000).toLocaleTimeString([], {
      hour: "2-digit",
      minute: "2-digit",
    }),
  );
  assert.ok(text.includes(`00:00 UTC: please try again after ${midnight}.`), text);
  assert.equal(await byTestId("retry-button").isVisible(), false);
}

const scenarios = { approval, token, resume, giveup, resumetoken, stop, budget };

try {
  const scenario = scenarios[config.scenario];
  assert.ok(scenario, `unknown scenario ${config.scenario}`);
  await scenario();
  assert.deepEqual(problems, [], "no page errors");
  console.log(`browser recovery ${config.scenario} passed`);
} finally {
  await close();
}
