// When the browser chat's stored session says its access token expires (src/session.ts, compiled here with the
// pinned TypeScript, nothing else of the page loaded). Run by pytest (tests/web/test_web_session.py).

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { test } from "node:test";
import ts from "typescript";

const source = await readFile(new URL("../src/session.ts", import.meta.url), "utf8");
const { outputText } = ts.transpileModule(source, {
  compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
});
const { sessionFromDelivery, tokenExpiry } = await import(`data:text/javascript,${encodeURIComponent(outputText)}`);

const NOW = 1_800_000_000_000;
const base64url = (text) => Buffer.from(text).toString("base64url");
/** An unsigned JWT with these claims (the page never verifies its own token). */
const jwt = (claims) => `${base64url('{"alg":"RS256"}')}.${base64url(JSON.stringify(claims))}.c2ln`;
const delivery = (accessToken, expiresIn = 3600) => ({
  guestId: "GST-1",
  email: "a@example.com",
  idToken: "id",
  accessToken,
  refreshToken: "refresh",
  expiresIn,
  sub: "sub",
});

test("a replayed delivery: the token's exp, not now + expires_in", () => {
  // Issued ten minutes ago: an hour's token has fifty minutes left, though expires_in still says 3600.
  const exp = NOW / 1000 + 50 * 60;
  assert.equal(sessionFromDelivery(delivery(jwt({ exp, sub: "sub", "é": "ü" })), NOW).expiresAt, exp * 1000);
});

test("a fresh delivery whose exp is exactly now + expires_in keeps it", () => {
  const exp = NOW / 1000 + 3600;
  assert.equal(sessionFromDelivery(delivery(jwt({ exp })), NOW).expiresAt, NOW + 3_600_000);
});

test("an exp outside now .. now + expires_in (clocks disagree, or already past) falls back to now + expires_in", () => {
  for (const exp of [NOW / 1000 + 7200, NOW / 1000 - 60, NOW / 1000]) {
    assert.equal(sessionFromDelivery(delivery(jwt({ exp })), NOW).expiresAt, NOW + 3_600_000, `exp ${exp}`);
  }
});

test("a token without a readable exp falls back to now + expires_in", () => {
  const unreadable = ["opaque", "a.b", "a.!!!.c", `${base64url("{}")}.${base64url("not json")}.c2ln`, jwt({}), jwt({ exp: "soon" }), jwt([1])];
  for (const token of unreadable) {
    assert.equal(tokenExpiry(token), null, token);
    assert.equal(sessionFromDelivery(delivery(token, 600), NOW).expiresAt, NOW + 600_000, token);
  }
  assert.equal(tokenExpiry(`${base64url("{}")}.${Buffer.from([0xff, 0xfe]).toString("base64url")}.c2ln`), null, "bad UTF-8");
});
