// An open approval card survives a reload (Debian's Chromium, playwright-core). Run by pytest
// (tests/web/test_browser_durable.py and tests/web/test_browser.py), which starts the gateway, makes a property of
// the test's own and serves the dev mailbox; WIRE_CONFIG says which scenario:
//
// "approve" (the scripted agent types slowly): signed in with the form, the person asks to book and reloads while
// the answer is still being typed -> the resumed turn shows one card, open -> reload again -> the card is back,
// once, open, and the page kept no token with it -> Approve -> the booking is made ("Booking: …", and "My
// reservations" lists it) -> reload -> the decided card is a plain line, no card -> a cancellation asked for,
// reload, the card withdrawn by a message from another tab -> Approve is refused and the card says so.
//
// "expire" (approvals wait a few seconds): the card comes, the page goes away while it is open and comes back
// after its expires_at -> the card is back as expired, both buttons disabled, nothing booked.

import assert from "node:assert/strict";
import { PHONE, chatPage, loadConfig, openBrowser, signInWithForm, step } from "./support.mjs";

const config = loadConfig();
const WAIT = { timeout: 20_000 };
const { context, close } = await openBrowser(config, { viewport: PHONE });
const problems = [];

try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  const { byTestId, waitTurns } = chatPage(page, WAIT);
  const cards = () => byTestId("approval-card");
  const stored = () => page.evaluate(() => JSON.parse(sessionStorage.getItem("booking_transcript") ?? "[]"));
  const booking = () => byTestId("tool-event").filter({ hasText: /^Booking: / });
  const summaryPattern = new RegExp(`^Book ${config.propertyName}, .+, 2 nights, 2 guests, \\d+\\.\\d{2} USD$`);

  await page.goto(config.webUrl);
  await signInWithForm(page, config);
  await byTestId("chat-input").fill(
    `book the ${config.propertyName} for 2 guests ${config.checkIn} to ${config.checkOut}`,
  );
  await byTestId("send-button").click();

  if (config.scenario === "approve") {
    step("reload while the turn that asks is still answering: the resumed turn shows one card");
    await page.waitForFunction(
      () =>
        [...document.querySelectorAll('[data-testid="assistant-message"]')].some(
          (m) => m.dataset.state === "streaming" && m.textContent.startsWith("I'd like to book"),
        ),
      null,
      WAIT,
    );
    const resumeToken = await page.evaluate(() => JSON.parse(sessionStorage.getItem("booking_turn")).resumeToken);
    await page.reload();
    await waitTurns(1); // the resumed turn has ended (the counter restarts with the page)
    await cards().first().waitFor(WAIT);
    assert.equal(await cards().count(), 1, "one card after the resumed turn");
    assert.equal(await cards().first().getAttribute("data-state"), "open");

    step("reload with the card open: it is back, once, open, and nothing secret was kept with it");
    const summary = await cards().first().locator('[data-testid="approval-summary"]').innerText();
    assert.match(summary, summaryPattern);
    await page.reload();
    await cards().first().waitFor(WAIT);
    assert.equal(await cards().count(), 1, "one card after the reload");
    const card = cards().first();
    assert.equal(await card.getAttribute("data-state"), "open");
    assert.equal(await card.locator('[data-testid="approval-summary"]').innerText(), summary);
    assert.equal(await card.locator('[data-testid="approve-button"]').isEnabled(), true);
    assert.equal(await card.locator('[data-testid="decline-button"]').isEnabled(), true);
    assert.match(await card.locator('[data-testid="approval-status"]').innerText(), /Nothing happens until you decide/);
    assert.equal(await booking().count(), 0, "nothing booked before the decision");
    const kept = JSON.stringify(await stored());
    const session = await page.evaluate(() => JSON.parse(localStorage.getItem("booking_session")));
    for (const secret of [resumeToken, session.accessToken, session.refreshToken, session.idToken]) {
      assert.ok(secret && !kept.includes(secret), "the kept transcript holds no token");
    }
    assert.ok(kept.includes('"role":"approval"'), kept);

    step("Approve after the reload: the gateway books it");
    await card.locator('[data-testid="approve-button"]').click();
    await waitTurns(1);
    await booking().last().waitFor(WAIT);
    assert.equal(await booking().last().getAttribute("data-state"), "ok");
    assert.equal(await card.getAttribute("data-state"), "approved");
    const reservationId = (await byTestId("message-list").innerText()).match(/RES-[A-Z0-9]+/)?.[0];
    assert.ok(reservationId, "the chat shows the new reservation's id");
    await byTestId("reservations-button").click();
    await byTestId("reservation-item").filter({ hasText: reservationId }).waitFor(WAIT);
    assert.match(await byTestId("reservations-panel").innerText(), new RegExp(config.propertyName));
    console.log(`reservation ${reservationId}`);

    step("reload after the decision: the card is a plain line, no buttons");
    await page.reload();
    await byTestId("notice").filter({ hasText: `Asked for approval: ${summary}` }).waitFor(WAIT);
    assert.equal(await cards().count(), 0);

    step("a restored cancellation card withdrawn from another tab: Approve is refused and the card says so");
    await byTestId("chat-input").fill(`cancel ${reservationId}`);
    await byTestId("send-button").click();
    await waitTurns(1);
    await page.reload();
    const cancelCard = cards().first();
    await cancelCard.waitFor(WAIT);
    assert.match(await cancelCard.locator('[data-testid="approval-summary"]').innerText(), /^Cancel /);
    assert.equal(await cancelCard.getAttribute("data-state"), "open");
    const other = await context.newPage(); // the same person and chat session (localStorage), another transcript
    await other.goto(config.webUrl);
    await other.locator('[data-testid="chat-input"]').fill("hello");
    await other.locator('[data-testid="send-button"]').click();
    await other.waitForFunction(
      () => Number(document.querySelector('[data-testid="chat-form"]').dataset.turns ?? "0") >= 1,
      null,
      WAIT,
    );
    await other.close();
    await cancelCard.locator('[data-testid="approve-button"]').click();
    await page.waitForFunction(
      () => document.querySelector('[data-testid="approval-card"]')?.dataset.state === "withdrawn",
      null,
      WAIT,
    );
    const note = await cancelCard.locator('[data-testid="approval-status"]').innerText();
    assert.match(note, /already answered|no longer waiting/);
    assert.equal(await byTestId("error-banner").isVisible(), true);
    assert.equal(await byTestId("tool-event").filter({ hasText: /^Cancelling: / }).count(), 0);
    await byTestId("reservations-button").click();
    await byTestId("reservation-item").filter({ hasText: reservationId }).getByText("confirmed").waitFor(WAIT);
  } else {
    step("the card comes; the page goes away while it is open and comes back after it expired");
    await cards().first().waitFor(WAIT);
    const entry = (await stored()).find((e) => e.role === "approval");
    assert.equal(entry?.state, "open", "kept open when the page goes away");
    await page.goto("about:blank");
    await page.waitForFunction((at) => Date.now() > at, entry.approval.expiresAt, WAIT);
    await page.goto(config.webUrl);
    await cards().first().waitFor(WAIT);
    assert.equal(await cards().count(), 1);
    const card = cards().first();
    assert.equal(await card.getAttribute("data-state"), "expired");
    assert.match(await card.locator('[data-testid="approval-status"]').innerText(), /expired; nothing was done/);
    assert.equal(await card.locator('[data-testid="approve-button"]').isDisabled(), true);
    assert.equal(await card.locator('[data-testid="decline-button"]').isDisabled(), true);
    assert.equal(await booking().count(), 0);
  }
  assert.deepEqual(problems, [], "no page errors");
  console.log("browser approval reload passed");
} finally {
  await close();
}
