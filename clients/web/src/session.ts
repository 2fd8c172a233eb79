// The signed-in session, kept in localStorage under "booking_session" (the seed's key and shape), and the
// chat session id, so a reload continues the conversation as the same person.

import type { TokenDelivery } from "./gen/booking/v1/auth_pb.js";

export const SESSION_KEY = "booking_session";
export const CHAT_KEY = "booking_chat_session";

/** What the seed stored after a TokenDeliveryEvent, field for field. */
export interface StoredSession {
  isAuthenticated: true;
  guestId: string;
  email: string;
  idToken: string;
  accessToken: string;
  refreshToken: string;
  /** Milliseconds since the epoch when the access token expires. */
  expiresAt: number;
  cognitoSub: string;
}

function isStoredSession(value: unknown): value is StoredSession {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    v.isAuthenticated === true &&
    typeof v.accessToken === "string" &&
    v.accessToken.length > 0 &&
    typeof v.refreshToken === "string" &&
    typeof v.expiresAt === "number" &&
    typeof v.email === "string" &&
    typeof v.guestId === "string"
  );
}

/** The session stored in this browser, or null (a corrupt entry is removed, never trusted). */
export function loadSession(): StoredSession | null {
  const raw = localStorage.getItem(SESSION_KEY);
  if (raw === null) return null;
  try {
    const parsed: unknown = JSON.parse(raw);
    if (isStoredSession(parsed)) return parsed;
  } catch {
    // fall through: unreadable
  }
  localStorage.removeItem(SESSION_KEY);
  return null;
}

/**
 * The `exp` claim of a JWT in milliseconds since the epoch, read without verifying it (the page's own access
 * token: the gateway verifies it), or null when the token has no readable `exp`.
 */
export function tokenExpiry(token: string): number | null {
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  try {
    const base64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4)), (c) => c.charCodeAt(0));
    const claims: unknown = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
    const exp = typeof claims === "object" && claims !== null ? (claims as Record<string, unknown>).exp : undefined;
    return typeof exp === "number" && Number.isFinite(exp) ? exp * 1000 : null;
  } catch {
    return null; // bad base64, bad UTF-8 or bad JSON
  }
}

/**
 * When the access token expires (ms since the epoch): its `exp` claim, else `now + expiresIn`.
 *
 * `expires_in` counts from when the tokens were issued, so it is late for tokens delivered again later (a
 * TokenDelivery replayed by ResumeChat after a reload keeps its original `expires_in`). The claim is used when it
 * falls between now and `now + expiresIn`; outside that this browser's clock disagrees with the issuer's (or the
 * token already expired), and `expiresIn` is the safer guess (a token the gateway finds expired is renewed then).
 * As the Python client's `token_expiry`.
 */
export function accessTokenExpiresAt(accessToken: string, expiresIn: number, now: number = Date.now()): number {
  const counted = now + expiresIn * 1000;
  const claimed = tokenExpiry(accessToken);
  return claimed !== null && now < claimed && claimed <= counted ? claimed : counted;
}

/** Store the tokens a TokenDelivery carried (from the chat stream, replayed by ResumeChat, or from VerifyOtp). */
export function sessionFromDelivery(delivery: TokenDelivery, now: number = Date.now()): StoredSession {
  return {
    isAuthenticated: true,
    guestId: delivery.guestId,
    email: delivery.email,
    idToken: delivery.idToken,
    accessToken: delivery.accessToken,
    refreshToken: delivery.refreshToken,
    expiresAt: accessTokenExpiresAt(delivery.accessToken, delivery.expiresIn, now),
    cognitoSub: delivery.sub,
  };
}

export function saveSession(session: StoredSession): void {
  localStorage.setItem(SESSION_KEY, JSON.stringify(session));
}

export function clearSession(): void {
  localStorage.removeItem(SESSION_KEY);
}

export function loadChatSessionId(): string {
  return localStorage.getItem(CHAT_KEY) ?? "";
}

export function saveChatSessionId(id: string): void {
  if (id) localStorage.setItem(CHAT_KEY, id);
  else localStorage.removeItem(CHAT_KEY);
}

/** "j***@example.com": enough for a person to recognise their address on a shared screen. */
export function maskEmail(email: string): string {
  const [local, domain] = email.split("@");
  if (!local || !domain) return email;
  return `${local[0]}***@${domain}`;
}
