// An approval that expires in the browser: run by pytest (tests/web/test_browser.py) against a gateway whose
// approvals expire at once. Signed in with the form, the person asks to book; the approval card comes, then
// says it expired, with both buttons disabled; nothing was booked; a reload shows it expired still.

import assert from "node:assert/strict";
import { PHONE, loadConfig, openBrowser, signInWithForm } from "./support.mjs";

const config = loadConfig();
const WAIT = { timeout: 20_000 };
const { context, close } = await openBrowser(config, { viewport: PHONE });
const problems = [];

try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  const byTestId = (id) => page.locator(`[data-testid="${id}"]`);

  await page.goto(config.webUrl);
  await signInWithForm(page, config);

  await byTestId("chat-input").fill(
    `book the ${config.propertyName} for 2 guests ${config.checkIn} to ${config.checkOut}`,
  );
  await byTestId("send-button").click();
  const card = byTestId("approval-card").last();
  await card.waitFor(WAIT);
  await page.waitForFunction(
    () => [...document.querySelectorAll('[data-testid="approval-card"]')].at(-1)?.dataset.state === "expired",
    null,
    WAIT,
  );
  assert.match(await card.locator('[data-testid="approval-status"]').innerText(), /expired; nothing was done/);
  assert.equal(await card.locator('[data-testid="approve-button"]').isDisabled(), true);
  assert.equal(await card.locator('[data-testid="decline-button"]').isDisabled(), true);
  assert.equal(await byTestId("tool-event").filter({ hasText: /^Booking: / }).count(), 0);

  // A reload shows it expired still, not as a working card.
  await page.reload();
  await card.waitFor(WAIT);
  assert.equal(await byTestId("approval-card").count(), 1);
  assert.equal(await card.getAttribute("data-state"), "expired");
  assert.match(await card.locator('[data-testid="approval-status"]').innerText(), /expired; nothing was done/);
  assert.equal(await card.locator('[data-testid="approve-button"]').isDisabled(), true);
  assert.deepEqual(problems, [], "no page errors");
  console.log("browser approval expiry passed");
} finally {
  await close();
}
