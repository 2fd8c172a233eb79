// Durable turns in a real browser (Debian's Chromium, playwright-core): a reload in the middle of an answer
// shows the rest of it once; the network going offline and back mid-answer shows "Reconnecting…" and then the
// rest, once; Stop cancels the turn in the gateway (CancelTurn) and the next message is answered; signing in with
// the form while an answer streams leaves it shown once. Run by pytest
// (tests/web/test_browser_durable.py) against a gateway whose scripted agent types slowly; WIRE_CONFIG gives
// the URL, the message and the reply it must end up showing.

import assert from "node:assert/strict";
import { join } from "node:path";
import { chatPage, loadConfig, openBrowser, signInWithForm, step } from "./support.mjs";

const config = loadConfig();
const WAIT = { timeout: 20_000 };
const { context, close } = await openBrowser(config);
const problems = [];

try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  const { byTestId, turns, waitTurns } = chatPage(page, WAIT);
  const replies = async () => (await byTestId("assistant-message").allInnerTexts()).join("\n");
  const started = () => page.waitForFunction(
    (words) => [...document.querySelectorAll('[data-testid="assistant-message"]')].some(
      (m) => m.dataset.state === "streaming" && m.textContent.startsWith(words),
    ),
    config.firstWords,
    WAIT,
  );

  async function send(text) {
    await byTestId("chat-input").fill(text);
    await byTestId("send-button").click();
  }

  await page.goto(config.webUrl);
  await byTestId("auth-status").getByText("Not signed in").waitFor(WAIT);

  step("reload in the middle of an answer: the rest is shown once");
  await send(config.message);
  await started();
  await page.reload();
  await waitTurns(1); // the resumed turn has ended (the counter restarts with the page)
  assert.equal((await replies()).split(config.reply).length - 1, 1, await replies());
  assert.equal(await page.evaluate(() => sessionStorage.getItem("booking_turn")), null);

  step("offline in the middle of an answer, then online: reconnecting, then the rest once");
  let before = await turns();
  await send(config.message);
  await started();
  await context.setOffline(true);
  await page.locator('[data-state="reconnecting"]').waitFor(WAIT);
  await context.setOffline(false);
  await waitTurns(before + 1);
  assert.equal((await replies()).split(config.reply).length - 1, 2, await replies());
  assert.equal(await byTestId("error-banner").isVisible(), false);

  step("Stop cancels the turn in the gateway; the next message is answered");
  before = await turns();
  await send(config.message);
  await started();
  await byTestId("send-button").click(); // the Send button is Stop while the agent answers
  await waitTurns(before + 1);
  await byTestId("notice").filter({ hasText: "Stopped." }).last().waitFor(WAIT);
  assert.equal((await replies()).split(config.reply).length - 1, 2, "the stopped answer is not complete");
  await send(config.message);
  await waitTurns(before + 2);
  assert.equal((await replies()).split(config.reply).length - 1, 3, await replies());

  step("signing in with the form while an answer streams: the answer is still shown once, in one bubble");
  before = await turns();
  const bubbles = await byTestId("assistant-message").count();
  await send(config.message);
  await started();
  await signInWithForm(page, config);
  await waitTurns(before + 1);
  await page.waitForFunction(() => document.querySelector('[data-testid="chat-form"]').ariaBusy === "false", null, WAIT);
  assert.equal((await replies()).split(config.reply).length - 1, 4, await replies());
  assert.equal(await byTestId("assistant-message").count(), bubbles + 1, await replies());
  assert.equal((await byTestId("assistant-message").last().innerText()).trim(), config.reply.trim());
  assert.equal(await byTestId("error-banner").isVisible(), false);
  assert.deepEqual(problems, []);
  console.log("browser durable turns passed");
} finally {
  await close();
}
