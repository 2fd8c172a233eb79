// The seed's end-to-end journey in a real browser: Debian's Chromium driven by playwright-core (no browser
// download), at phone width. Run by pytest (tests/web/test_browser.py), which starts the gateway, makes a
// property of the test's own, serves the dev mailbox, and writes WIRE_CONFIG.
//
// anonymous availability -> "I want to book ..." (checked, price said) -> name and email -> the code from the dev
// mailbox -> the session in localStorage -> the booking's approval card, approved from the keyboard -> a
// cancellation declined, another withdrawn by a new message -> "what are my reservations" shows the booking -> reload, still signed in (and over
// gRPC-Web too) -> the token refreshed before it expires -> sign out, and the old token is refused by the
// gateway. Then the errors a person may meet, in words: a wrong code with the attempts left, a code asked for
// too soon with when to try again, the gateway unreachable with a Retry that works.

import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { clients, loadConfig, mailboxCode, refused, step } from "./support.mjs";

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

try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    // Chromium logs every failed request; the refusals below are on purpose and shown to the person instead.
    if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) {
      problems.push(`console error: ${message.text()}`);
    }
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

  step("type the code from the dev mailbox: signed in, the session in localStorage, the booking asked for");
  const code = await mailboxCode(config.mailboxUrl, config.email, 0);
  await say(code);
  await byTestId("auth-status").getByText(`Signed in as ${config.email}`).waitFor(WAIT);
  const session = await storedSession();
  assert.equal(session?.isAuthenticated, true);
  assert.ok(session.accessToken && session.refreshToken && session.idToken);
  assert.equal(session.email, config.email);
  assert.match(session.guestId, /^GST-/);
  assert.ok(session.expiresAt > Date.now());

  step("the approval card: the gateway's summary, nothing booked yet, focus on Approve; Enter approves");
  const card = byTestId("approval-card").last();
  await card.waitFor(WAIT);
  const summary = await card.locator('[data-testid="approval-summary"]').innerText();
  assert.match(summary, new RegExp(`^Book ${config.propertyName}, .+, 3 nights, 2 guests, \\d+\\.\\d{2} USD$`));
  assert.equal(await byTestId("tool-event").filter({ hasText: /^Booking: / }).count(), 0);
  assert.equal(await page.evaluate(() => document.activeElement?.dataset.testid), "approve-button");
  const beforeApproval = Number((await byTestId("chat-form").getAttribute("data-turns")) ?? "0");
  await page.keyboard.press("Enter");
  await page.waitForFunction(
    (before) => Number(document.querySelector('[data-testid="chat-form"]').dataset.turns ?? "0") > before,
    beforeApproval,
    WAIT,
  );
  await byTestId("tool-event").filter({ hasText: /^Booking: / }).last().waitFor(WAIT);
  assert.equal(await card.getAttribute("data-state"), "approved");
  assert.equal(await card.locator('[data-testid="approve-button"]').isDisabled(), true);
  assert.equal(await card.locator('[data-testid="decline-button"]').isDisabled(), true);
  const booked = (await byTestId("message-list").innerText()).match(/RES-[A-Z0-9]+/);
  assert.ok(booked, "the chat shows the new reservation's id");
  const reservationId = booked[0];

  step("a cancellation asked for and declined: nothing is cancelled, the card is disabled");
  await say(`cancel ${reservationId}`);
  const cancelCard = byTestId("approval-card").last();
  assert.match(await cancelCard.locator('[data-testid="approval-summary"]').innerText(), new RegExp(`^Cancel ${reservationId}: `));
  const beforeDecline = Number((await byTestId("chat-form").getAttribute("data-turns")) ?? "0");
  await cancelCard.locator('[data-testid="decline-button"]').click();
  await page.waitForFunction(
    (before) => Number(document.querySelector('[data-testid="chat-form"]').dataset.turns ?? "0") > before,
    beforeDecline,
    WAIT,
  );
  assert.match(await lastReply().innerText(), /haven't cancelled/);
  assert.equal(await cancelCard.getAttribute("data-state"), "declined");
  assert.equal(await cancelCard.locator('[data-testid="approve-button"]').isDisabled(), true);

  step("a new message withdraws an open approval: its buttons are disabled, nothing is cancelled");
  await say(`cancel ${reservationId}`);
  const withdrawnCard = byTestId("approval-card").last();
  assert.equal(await withdrawnCard.getAttribute("data-state"), "open");
  await say("yes");
  assert.equal(await withdrawnCard.getAttribute("data-state"), "withdrawn");
  assert.equal(await withdrawnCard.locator('[data-testid="approve-button"]').isDisabled(), true);
  assert.match(await lastReply().innerText(), /cannot approve/);

  step("what are my reservations: the booking made in the chat");
  await say("what are my reservations?");
  assert.match(await lastReply().innerText(), new RegExp(reservationId));
  mkdirSync(config.artifactsDir, { recursive: true });
  await page.screenshot({ path: join(config.artifactsDir, "browser-chat-signed-in.png") });
  await byTestId("reservations-button").click();
  await byTestId("reservation-item").filter({ hasText: reservationId }).waitFor(WAIT);
  assert.match(await byTestId("reservations-panel").innerText(), new RegExp(config.propertyName));
  // One money format: the list shows the total exactly as the gateway's approval summary wrote it.
  const total = summary.slice(summary.lastIndexOf(", ") + 2);
  assert.ok(
    (await byTestId("reservation-item").filter({ hasText: reservationId }).innerText()).includes(total),
    `the list shows the total as ${total}`,
  );
  await page.screenshot({ path: join(config.artifactsDir, "browser-my-reservations.png") });
  await byTestId("reservations-close").click();

  step("reload: still signed in, the restored messages without a caret, the bearer still goes with every call");
  await page.reload();
  await byTestId("auth-status").getByText(`Signed in as ${config.email}`).waitFor(WAIT);
  assert.ok((await byTestId("assistant-message").count()) > 1);
  assert.equal(await page.locator(".streaming").count(), 0, "a restored message shows the streaming caret");
  await say("what are my reservations?");
  assert.match(await lastReply().innerText(), new RegExp(reservationId));

  step("the same page over gRPC-Web: same session, same answers");
  await page.goto(`${config.webUrl}/?protocol=grpc-web`);
  await byTestId("auth-status").getByText(`Signed in as ${config.email}`).waitFor(WAIT);
  await byTestId("reservations-button").click();
  await byTestId("reservation-item").filter({ hasText: reservationId }).waitFor(WAIT);

  step("a token about to expire is refreshed before it does");
  const before = await storedSession();
  await page.evaluate(() => {
    const stored = JSON.parse(localStorage.getItem("booking_session"));
    localStorage.setItem("booking_session", JSON.stringify({ ...stored, expiresAt: Date.now() + 20_000 }));
  });
  await page.reload();
  await page.waitForFunction(
    (old) => {
      const now = JSON.parse(localStorage.getItem("booking_session") || "null");
      return now && now.accessToken !== old && now.expiresAt > Date.now() + 600_000;
    },
    before.accessToken,
    WAIT,
  );
  await byTestId("auth-status").getByText(`Signed in as ${config.email}`).waitFor(WAIT);

  step("sign out: the session is gone here and refused by the gateway");
  const revoked = (await storedSession()).accessToken;
  await byTestId("signout-button").click();
  await byTestId("auth-status").getByText("Not signed in").waitFor(WAIT);
  assert.equal(await storedSession(), null);
  step("signed out: the conversation is gone from the screen and the storage, a fresh one starts");
  assert.ok(!(await byTestId("message-list").innerText()).includes(config.email));
  assert.ok(!(await page.evaluate(() => JSON.stringify(sessionStorage))).includes(config.email));
  assert.equal(await byTestId("user-message").count(), 0);
  await page.reload();
  await byTestId("auth-status").getByText("Not signed in").waitFor(WAIT);
  assert.ok(!(await byTestId("message-list").innerText()).includes(config.email));
  const api = clients(config.webUrl, "connect", { token: revoked });
  const refusal = await refused(() => api.reservations.listReservations({}));
  assert.deepEqual({ code: refusal.code, reason: refusal.reason }, { code: "UNAUTHENTICATED", reason: "TOKEN_REVOKED" });

  step("sign in with the form: a wrong code says how many attempts are left; the right one signs in");
  const email = `form-${config.email}`;
  await byTestId("signin-button").click();
  await byTestId("login-email").fill(email);
  await byTestId("login-email").press("Enter");
  await byTestId("code-sent").getByText(/We sent a code to/).waitFor(WAIT);
  const formCode = await mailboxCode(config.mailboxUrl, email, 0);
  const wrong = [...formCode].map((digit) => (digit === "1" ? "2" : "1")).join("");
  await byTestId("login-code").fill(wrong);
  await byTestId("login-code").press("Enter");
  await byTestId("signin-error").getByText("That code isn't right. You have 2 attempts left.").waitFor(WAIT);
  await byTestId("login-code").fill(formCode);
  await byTestId("code-submit").click();
  await byTestId("auth-status").getByText(`Signed in as ${email}`).waitFor(WAIT);

  step("a code asked for again too soon says when to try again");
  await byTestId("signout-button").click();
  await byTestId("auth-status").getByText("Not signed in").waitFor(WAIT);
  await byTestId("signin-button").click();
  await byTestId("login-email").fill(email);
  await byTestId("login-submit").click();
  await byTestId("signin-error").getByText(/^Too many attempts\. Please try again (in \d+ seconds|at .+)\.$/).waitFor(WAIT);
  await byTestId("signin-cancel").click();

  step("the gateway unreachable: said plainly, and Retry works once it is back");
  await page.route(/\/booking\.v1\./, (route) => route.abort("connectionrefused"));
  const turns = Number((await byTestId("chat-form").getAttribute("data-turns")) ?? "0");
  await byTestId("chat-input").fill("hello");
  await byTestId("send-button").click();
  await byTestId("error-banner").getByText(/Can't reach the booking service/).waitFor(WAIT);
  await page.unroute(/\/booking\.v1\./);
  await byTestId("retry-button").click();
  await page.waitForFunction(
    (before) => Number(document.querySelector('[data-testid="chat-form"]').dataset.turns) > before + 1,
    turns,
    WAIT,
  );
  assert.equal(await byTestId("error-banner").isVisible(), false);
  assert.match(await lastReply().innerText(), /Hello!/);

  assert.deepEqual(problems, [], "no page errors or console errors");
  console.log("browser journey passed");
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
