// Natural dates in a real browser: Debian's Chromium driven by playwright-core. Run by pytest
// (tests/web/test_browser_dates.py), which starts the gateway, makes a property of the test's own, serves the
// dev mailbox, and writes WIRE_CONFIG with the dates "next friday for 2 nights" must be read as.
//
// "what's free next friday for 2 nights?" -> the reply names those dates -> book that property for 2 guests ->
// name and email -> the code from the dev mailbox -> booked -> "what are my reservations" reads the dates back.

import assert from "node:assert/strict";
import { loadConfig, mailboxCode, openBrowser, step } from "./support.mjs";

const config = loadConfig();
const WAIT = { timeout: 20_000 };
const { context, close } = await openBrowser(config);

try {
  const page = context.pages()[0] ?? (await context.newPage());
  const byTestId = (id) => page.locator(`[data-testid="${id}"]`);
  const lastReply = () => byTestId("assistant-message").last();

  /** Send a message and wait until the agent's turn has ended. */
  async function say(text) {
    const turns = Number((await byTestId("chat-form").getAttribute("data-turns")) ?? "0");
    await byTestId("chat-input").fill(text);
    await byTestId("send-button").click();
    await page.waitForFunction(
      (before) => Number(document.querySelector('[data-testid="chat-form"]').dataset.turns ?? "0") > before,
      turns,
      WAIT,
    );
    assert.equal(await byTestId("error-banner").isVisible(), false, `no error after "${text}"`);
  }

  step("open the chat: the greeting's example is a date that is never in the past");
  await page.goto(config.webUrl);
  await byTestId("auth-status").getByText("Not signed in").waitFor(WAIT);
  assert.match(await lastReply().innerText(), /next friday for 2 nights/);

  step("what's free next friday for 2 nights: the reply names the dates");
  await say("what's free next friday for 2 nights?");
  const offered = await lastReply().innerText();
  assert.ok(offered.includes(`For 2 nights from ${config.stayText}`), offered);
  assert.ok(offered.includes(config.propertyName), offered);

  step("book it: name, email and the code, the approval, then the booking with those dates");
  await say(`book the ${config.propertyName} for 2 guests`);
  assert.match(await lastReply().innerText(), /name and email/);
  await say(`${config.name}, ${config.email}`);
  await page.getByText(/sent a one-time code/).waitFor(WAIT);
  await say(await mailboxCode(config.mailboxUrl, config.email, 0));
  await byTestId("auth-status").getByText(`Signed in as ${config.email}`).waitFor(WAIT);
  // The booking waits for the person's approval (issue 18): approve it on its card.
  const card = byTestId("approval-card").last();
  await card.waitFor(WAIT);
  const turns = Number((await byTestId("chat-form").getAttribute("data-turns")) ?? "0");
  await card.locator('[data-testid="approve-button"]').click();
  await page.waitForFunction(
    (before) => Number(document.querySelector('[data-testid="chat-form"]').dataset.turns ?? "0") > before,
    turns,
    WAIT,
  );
  const booked = await byTestId("message-list").innerText();
  assert.ok(booked.includes(`${config.propertyName}, ${config.stayText}, 2 guests`), booked);

  step("what are my reservations: the dates read back");
  await say("what are my reservations?");
  const mine = await lastReply().innerText();
  assert.ok(mine.includes(`${config.propertyName}, ${config.stayText}`), mine);
  console.log("browser dates passed");
} finally {
  await close();
}
