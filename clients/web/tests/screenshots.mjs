// A screenshot of each main view of the browser chat (the empty chat, a streamed answer, an error, the sign-in
// card) at phone and desktop width, compared with the stored image in tests/screenshots/: more than
// TOLERANCE of the pixels differing (by more than CHANNEL_SLACK on a colour channel) fails, so a broken layout
// fails the suite while anti-aliasing does not. The comparison runs in the page (a canvas), with no image
// library. UPDATE_SCREENSHOTS=1 writes the stored images anew (after a change meant to alter the layout; look at
// them before committing). Run by pytest (tests/web/test_screenshots.py), which writes WIRE_CONFIG.

import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { loadConfig } from "./support.mjs";

const config = loadConfig();
const WAIT = { timeout: 20_000 };
const STORED = join(dirname(fileURLToPath(import.meta.url)), "screenshots");
const UPDATE = process.env.UPDATE_SCREENSHOTS === "1";
const TOLERANCE = 0.001; // of the pixels: the same machine renders the same page identically (0.00%)
const CHANNEL_SLACK = 48; // of 255
const WIDTHS = [
  { name: "phone", viewport: { width: 390, height: 844 } },
  { name: "desktop", viewport: { width: 1280, height: 800 } },
];

const browser = await chromium.launch({
  executablePath: config.chromium,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--font-render-hinting=none"],
});
const differences = [];

/** The share of pixels that differ between two PNGs of one size (1 when the sizes differ), computed in `page`. */
async function differing(page, expected, actual) {
  return page.evaluate(
    async ({ a, b, slack }) => {
      const load = async (base64) => {
        const image = new Image();
        image.src = `data:image/png;base64,${base64}`;
        await image.decode();
        const canvas = new OffscreenCanvas(image.width, image.height);
        const context = canvas.getContext("2d");
        context.drawImage(image, 0, 0);
        return context.getImageData(0, 0, image.width, image.height);
      };
      const [x, y] = [await load(a), await load(b)];
      if (x.width !== y.width || x.height !== y.height) return 1;
      let count = 0;
      for (let i = 0; i < x.data.length; i += 4) {
        for (let c = 0; c < 3; c++) {
          if (Math.abs(x.data[i + c] - y.data[i + c]) > slack) {
            count++;
            break;
          }
        }
      }
      return count / (x.width * x.height);
    },
    { a: expected.toString("base64"), b: actual.toString("base64"), slack: CHANNEL_SLACK },
  );
}

async function compare(page, view) {
  const actual = await page.screenshot({ animations: "disabled", caret: "hide" });
  const file = join(STORED, `${view}.png`);
  if (UPDATE || !existsSync(file)) {
    assert.ok(UPDATE, `no stored screenshot ${file}: run with UPDATE_SCREENSHOTS=1 and commit it`);
    mkdirSync(STORED, { recursive: true });
    writeFileSync(file, actual);
    console.log(`- ${view}: stored`);
    return;
  }
  const share = await differing(page, readFileSync(file), actual);
  console.log(`- ${view}: ${(share * 100).toFixed(2)}% of the pixels differ`);
  if (share > TOLERANCE) {
    mkdirSync(config.artifactsDir, { recursive: true });
    writeFileSync(join(config.artifactsDir, `${view}.actual.png`), actual);
    differences.push(`${view}: ${(share * 100).toFixed(2)}% of the pixels differ (see ${config.artifactsDir})`);
  }
}

try {
  for (const { name, viewport } of WIDTHS) {
    const context = await browser.newContext({ viewport, deviceScaleFactor: 1, locale: "en-US" });
    const page = await context.newPage();
    const byTestId = (id) => page.locator(`[data-testid="${id}"]`);

    await page.goto(config.webUrl);
    await byTestId("auth-status").getByText("Not signed in").waitFor(WAIT);
    await compare(page, `empty-chat-${name}`);

    // A streamed answer whose words depend neither on the day (the help text computes its example dates from
    // today) nor on other tests' data.
    const before = Number((await byTestId("chat-form").getAttribute("data-turns")) ?? "0");
    await byTestId("chat-input").fill("thanks");
    await byTestId("send-button").click();
    await page.waitForFunction(
      (n) => Number(document.querySelector('[data-testid="chat-form"]').dataset.turns ?? "0") > n,
      before,
      WAIT,
    );
    await compare(page, `streamed-answer-${name}`);

    await page.route(/\/booking\.v1\./, (route) => route.abort("connectionrefused"));
    await byTestId("chat-input").fill("hello");
    await byTestId("send-button").click();
    await byTestId("error-banner").getByText(/Can't reach the booking service/).waitFor(WAIT);
    await compare(page, `error-${name}`);
    await page.unroute(/\/booking\.v1\./);

    await byTestId("signin-button").click();
    await byTestId("signin-panel").waitFor({ state: "visible", ...WAIT });
    await compare(page, `sign-in-card-${name}`);
    await context.close();
  }
} finally {
  await browser.close();
}

assert.deepEqual(differences, [], "screenshots differ from the stored ones");
console.log("screenshots passed");
