// Accessibility of the browser chat's main views, in Debian's Chromium driven by playwright-core: axe-core
// (installed from clients/web/package-lock.json) on the empty chat, a streamed answer, an error and the sign-in
// card, at phone and desktop width; a serious or critical violation fails. The chat is used with the keyboard
// alone (typing, Enter, Tab to the Sign in button), and a new reply lands in the live region.
// Run by pytest (tests/web/test_accessibility.py), which starts the gateway and writes WIRE_CONFIG.

import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";
import { loadConfig } from "./support.mjs";

const config = loadConfig();
const WAIT = { timeout: 20_000 };
const AXE = createRequire(import.meta.url).resolve("axe-core/axe.min.js");
const WIDTHS = [
  { name: "phone", viewport: { width: 390, height: 844 } },
  { name: "desktop", viewport: { width: 1280, height: 800 } },
];

const browser = await chromium.launch({
  executablePath: config.chromium,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
});
const failures = [];

/** The serious and critical violations axe finds on the page as it is now. */
async function audit(page, view) {
  await page.addScriptTag({ path: AXE });
  const violations = await page.evaluate(async () => {
    const result = await globalThis.axe.run(document, { resultTypes: ["violations"] });
    return result.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      targets: v.nodes.map((node) => node.target.join(" ")),
    }));
  });
  for (const violation of violations.filter((v) => ["serious", "critical"].includes(v.impact))) {
    failures.push(`${view}: ${violation.impact} ${violation.id} (${violation.help}) at ${violation.targets.join(", ")}`);
  }
  console.log(`- ${view}: ${violations.map((v) => `${v.impact} ${v.id}`).join(", ") || "no violations"}`);
}

try {
  for (const { name, viewport } of WIDTHS) {
    // bypassCSP: axe is injected as a script of the test's own; the page itself runs under its usual policy.
    const context = await browser.newContext({ viewport, bypassCSP: true });
    const page = await context.newPage();
    const byTestId = (id) => page.locator(`[data-testid="${id}"]`);
    const turns = async () => Number((await byTestId("chat-form").getAttribute("data-turns")) ?? "0");

    await page.goto(config.webUrl);
    await byTestId("auth-status").getByText("Not signed in").waitFor(WAIT);
    await audit(page, `${name} empty chat`);

    // The keyboard alone: focus starts in the message box; type, Enter sends.
    assert.equal(await page.evaluate(() => document.activeElement?.dataset.testid), "chat-input");
    const before = await turns();
    await page.keyboard.type(`What's available ${config.checkIn} to ${config.checkOut}?`);
    await page.keyboard.press("Enter");
    await page.waitForFunction(
      (n) => Number(document.querySelector('[data-testid="chat-form"]').dataset.turns ?? "0") > n,
      before,
      WAIT,
    );
    // The reply is inside the live region, so a screen reader announces it.
    const live = await page.evaluate(() => {
      const replies = document.querySelectorAll('[data-testid="assistant-message"]');
      const reply = replies[replies.length - 1];
      const region = reply?.closest("[aria-live]");
      return { polite: region?.getAttribute("aria-live"), text: reply?.textContent ?? "" };
    });
    assert.equal(live.polite, "polite");
    assert.match(live.text, /free|booked/);
    assert.equal(await page.locator(".streaming").count(), 0);
    await audit(page, `${name} streamed answer`);

    // An error, said in words, with a Retry button.
    await page.route(/\/booking\.v1\./, (route) => route.abort("connectionrefused"));
    await byTestId("chat-input").fill("hello");
    await page.keyboard.press("Enter");
    await byTestId("error-banner").getByText(/Can't reach the booking service/).waitFor(WAIT);
    await audit(page, `${name} error`);
    await page.unroute(/\/booking\.v1\./);
    await page.keyboard.press("Enter"); // focus is on Retry
    await byTestId("error-banner").waitFor({ state: "hidden", ...WAIT });

    // Tab reaches the Sign in button; Enter opens the card with the focus in the email field.
    let reached = false;
    for (let i = 0; i < 20 && !reached; i++) {
      await page.keyboard.press("Tab");
      reached = (await page.evaluate(() => document.activeElement?.dataset.testid)) === "signin-button";
    }
    assert.ok(reached, "Tab never reaches the Sign in button");
    await page.keyboard.press("Enter");
    await byTestId("signin-panel").waitFor({ state: "visible", ...WAIT });
    assert.equal(await page.evaluate(() => document.activeElement?.dataset.testid), "login-email");
    await audit(page, `${name} sign-in card`);
    await context.close();
  }
} finally {
  await browser.close();
}

assert.deepEqual(failures, [], "serious or critical accessibility violations");
console.log("accessibility passed");
