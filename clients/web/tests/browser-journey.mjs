// The seed's end-to-end journey in a real browser: Debian's Chromium driven by playwright-core (no browser
// download), at phone width. Run by pytest (tests/web/test_browser.py), which starts the gateway, makes a
// property of the test's own, serves the dev mailbox, and writes WIRE_CONFIG.
//
// anonymous availability -> "I want to book ..." -> name and email -> the code from the dev mailbox -> the
// session in localStorage -> "what are my reservations" shows the booking -> reload, still signed in (and over
// gRPC-Web too) -> sign out, and the old token is refused by the gateway.

import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { clients, loadConfig, mailboxCode, refused } from "./support.mjs";

const config = loadConfig();
const WAIT = { timeout: 20_000 };
const CHROMIUM_FLAGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const profile = mkdtempSync(join(tmpdir(), "booking-chat-profile-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: config.chromium,
  headless: true,
  args: CHROMIUM_FLAGS,
  viewport: { width: 390, height: 844 }, // a phone
});
const problems = [];

function step(name) {
  console.log(`- ${name}`);
}

try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`console error: ${message.text()}`);
  });

  const byTestId = (id) => page.locator(`[data-testid="${id}"]`);
  const lastReply = () => byTestId("assistant-message").last();

  /** Type a message, send it (by button or by Enter), and wait until the agent's turn has ended. */
  async function say(text, { withEnter = false } = {}) {
    const turns = Number((await byTestId("chat-form").getAttribute("data-turns")) ?? "0");
    await byTestId("chat-input").fill(text);
    if (withEnter) await byTestId("chat-input").press("Enter");
    else await byTestId("send-button").click();
    await page.waitForFunction(
      (before) => Number(document.querySelector('[data-testid="chat-form"]').dataset.turns ?? "0") > before,
      turns,
      WAIT,
    );
    assert.equal(await byTestId("error-banner").isVisible(), false, `no error after "${text}"`);
  }

  async function storedSession() {
    return page.evaluate(() => JSON.parse(localStorage.getItem("booking_session") || "null"));
  }

  step("open the chat: anonymous, keyboard focus in the message box, nothing wider than the phone");
  await page.goto(config.webUrl);
  await byTestId("auth-status").getByText("Not signed in").waitFor(WAIT);
  assert.equal(await page.evaluate(() => document.activeElement?.dataset.testid), "chat-input");
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth));

  step("anonymous availability");
  await say(`What's available ${config.checkIn} to ${config.checkOut}?`, { withEnter: true });
  await byTestId("tool-event").filter({ hasText: "Checking availability" }).last().waitFor(WAIT);
  assert.match(await lastReply().innerText(), new RegExp(config.propertyName));

  step("ask to book: the agent asks for a name and an email");
  await say(`I want to book the ${config.propertyName} for 2 guests`);
  assert.match(await lastReply().innerText(), /name and email/);

  step("give a name and an email: a code is sent");
  await say(`${config.name}, ${config.email}`);
  await page.getByText(/sent a one-time code/).waitFor(WAIT);

  step("type the code from the dev mailbox: signed in, the session in localStorage, the stay booked");
  const code = await mailboxCode(config.mailboxUrl, config.email, 0);
  await say(code);
  await byTestId("auth-status").getByText(`Signed in as ${config.email}`).waitFor(WAIT);
  const session = await storedSession();
  assert.equal(session?.isAuthenticated, true);
  assert.ok(session.accessToken && session.refreshToken && session.idToken);
  assert.equal(session.email, config.email);
  assert.match(session.guestId, /^GST-/);
  assert.ok(session.expiresAt > Date.now());
  await byTestId("tool-event").filter({ hasText: /^Booking: / }).last().waitFor(WAIT);
  const booked = (await byTestId("message-list").innerText()).match(/RES-[A-Z0-9]+/);
  assert.ok(booked, "the chat shows the new reservation's id");
  const reservationId = booked[0];

  step("what are my reservations: the booking made in the chat");
  await say("what are my reservations?");
  assert.match(await lastReply().innerText(), new RegExp(reservationId));
  mkdirSync(config.artifactsDir, { recursive: true });
  await page.screenshot({ path: join(config.artifactsDir, "browser-chat-signed-in.png") });
  await byTestId("reservations-button").click();
  await byTestId("reservation-item").filter({ hasText: reservationId }).waitFor(WAIT);
  assert.match(await byTestId("reservations-panel").innerText(), new RegExp(config.propertyName));
  await page.screenshot({ path: join(config.artifactsDir, "browser-my-reservations.png") });
  await byTestId("reservations-close").click();

  step("reload: still signed in, and the bearer still goes with every call");
  await page.reload();
  await byTestId("auth-status").getByText(`Signed in as ${config.email}`).waitFor(WAIT);
  await say("what are my reservations?");
  assert.match(await lastReply().innerText(), new RegExp(reservationId));

  step("the same page over gRPC-Web: same session, same answers");
  await page.goto(`${config.webUrl}/?protocol=grpc-web`);
  await byTestId("auth-status").getByText(`Signed in as ${config.email}`).waitFor(WAIT);
  await byTestId("reservations-button").click();
  await byTestId("reservation-item").filter({ hasText: reservationId }).waitFor(WAIT);

  step("sign out: the session is gone here and refused by the gateway");
  const revoked = (await storedSession()).accessToken;
  await byTestId("signout-button").click();
  await byTestId("auth-status").getByText("Not signed in").waitFor(WAIT);
  assert.equal(await storedSession(), null);
  const api = clients(config.webUrl, "connect", { token: revoked });
  const refusal = await refused(() => api.reservations.listReservations({}));
  assert.deepEqual({ code: refusal.code, reason: refusal.reason }, { code: "UNAUTHENTICATED", reason: "TOKEN_REVOKED" });

  assert.deepEqual(problems, [], "no page errors or console errors");
  console.log("browser journey passed");
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
