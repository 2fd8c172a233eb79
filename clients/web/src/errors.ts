// Turns a failed call into words a person understands. Branches on ErrorInfo.reason (never on the message),
// like every client of the gateway should.

import { Code, ConnectError } from "@connectrpc/connect";
import { type Duration } from "@bufbuild/protobuf/wkt";
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from "./gen/google/rpc/error_details_pb.js";

export interface Explained {
  /** What to tell the person. */
  text: string;
  /** The gateway's ErrorInfo.reason, "" when the failure never reached it (network down). */
  reason: string;
  /** Offer a retry button: the same action may work when tried again. */
  retryable: boolean;
  /** Seconds to wait before retrying, when the gateway said so. */
  retryAfterSeconds: number | null;
  /** The bearer is no good any more: the client should drop the stored session. */
  signedOut: boolean;
}

function seconds(duration: Duration | undefined): number | null {
  if (!duration) return null;
  return Number(duration.seconds) + duration.nanos / 1e9;
}

function whenText(after: number): string {
  const rounded = Math.max(1, Math.ceil(after));
  const at = new Date(Date.now() + rounded * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return rounded < 90 ? `in ${rounded} seconds` : `at ${at}`;
}

/**
 * When a daily budget renews, as the person's local time: now + the gateway's RetryInfo delay (rounded to the
 * minute), or the next 00:00 UTC when the delay is missing.
 */
function renewsAt(after: number | null): string {
  const day = 86_400_000;
  const at = after === null ? Math.floor(Date.now() / day + 1) * day : Math.round((Date.now() + after * 1000) / 60_000) * 60_000;
  return new Date(at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/** The reason of a ConnectError ("" when it has no ErrorInfo). */
export function reasonOf(error: unknown): string {
  if (!(error instanceof ConnectError)) return "";
  return error.findDetails(ErrorInfoSchema)[0]?.reason ?? "";
}

// What to do for a new code, in the sign-in form's own words (its buttons); tests/web/test_suggestions.py checks
// that every control a text names in curly quotes is on the page.
const NEW_CODE = "Choose “Use another email”, then “Email me a code” for a new one.";

export const SIGN_IN_ENDED = "Your sign-in has ended. Please sign in again to continue.";

export function explain(error: unknown): Explained {
  const failure = ConnectError.from(error);
  const info = failure.findDetails(ErrorInfoSchema)[0];
  const retry = seconds(failure.findDetails(RetryInfoSchema)[0]?.retryDelay);
  const reason = info?.reason ?? "";
  const base: Explained = { text: "", reason, retryable: false, retryAfterSeconds: retry, signedOut: false };
  switch (reason) {
    case "OTP_INVALID": {
      const left = Number(info?.metadata["attempts_left"] ?? "NaN");
      if (left === 0) {
        return { ...base, text: `That code isn't right, and no attempts are left. ${NEW_CODE}` };
      }
      const attempts = Number.isFinite(left)
        ? ` You have ${left} ${left === 1 ? "attempt" : "attempts"} left.`
        : "";
      return { ...base, text: `That code isn't right.${attempts}` };
    }
    case "OTP_EXPIRED":
      return { ...base, text: `That code has expired. ${NEW_CODE}` };
    case "OTP_ATTEMPTS_EXHAUSTED":
      return { ...base, text: `Too many wrong codes for this sign-in. ${NEW_CODE}` };
    case "LOGIN_NOT_FOUND":
      return { ...base, text: `This sign-in is no longer valid. ${NEW_CODE}` };
    case "RATE_LIMITED":
      return {
        ...base,
        retryable: true,
        text: `Too many attempts. Please try again ${retry === null ? "in a little while" : whenText(retry)}.`,
      };
    case "TOKEN_BUDGET_EXHAUSTED": {
      // The day's model-token budget (this client's, or the whole service's) is spent until 00:00 UTC: retrying
      // sooner cannot work, so no Retry; the time it renews, in the person's own time.
      const who = info?.metadata["budget"] === "gateway" ? "The assistant has" : "You've";
      return {
        ...base,
        text: `${who} used up today's allowance of assistant replies. It renews at 00:00 UTC: please try again after ${renewsAt(retry)}.`,
      };
    }
    case "OVERLOADED":
    case "SHUTTING_DOWN":
    case "UPSTREAM_UNAVAILABLE":
    case "JWKS_UNAVAILABLE":
      return {
        ...base,
        retryable: true,
        text: `The booking service is busy or briefly unavailable. Please try again ${
          retry === null ? "in a moment" : whenText(retry)
        }.`,
      };
    case "TOKEN_EXPIRED":
      // Not signed out: the client renews the session and retries; this is said only when the renewal could not
      // reach the service (a refused renewal forgets the session and says SIGN_IN_ENDED).
      return {
        ...base,
        retryable: true,
        text: "Your sign-in needs renewing, and the booking service couldn't be reached to renew it. Please retry in a moment.",
      };
    case "TOKEN_REVOKED":
    case "TOKEN_INVALID":
    case "TOKEN_MALFORMED":
    case "TOKEN_WRONG_USE":
      return { ...base, signedOut: true, text: SIGN_IN_ENDED };
    case "TOKEN_MISSING":
      return { ...base, text: "Please sign in first: ask me to book, or choose “Sign in”." };
    case "SESSION_NOT_OWNED":
      return { ...base, text: "This conversation belongs to another account, so I started a new one." };
    case "SESSION_NOT_FOUND":
      return { ...base, text: "That conversation has expired, so I started a new one." };
    case "NIGHTS_TAKEN":
      return { ...base, text: "Some of those nights were just booked by someone else. Try other dates." };
    case "RESERVATION_NOT_FOUND":
      return { ...base, text: "I can't find that reservation on your account." };
    case "NOT_FOUND":
      return { ...base, text: "I can't find that. Please check it and try again." };
    case "APPROVAL_EXPIRED":
      return { ...base, text: "That request expired before you decided, so nothing was done. Ask again." };
    case "APPROVAL_ALREADY_USED":
      return { ...base, text: "That request was already answered (or replaced by a newer message)." };
    case "APPROVAL_NOT_FOUND":
      return { ...base, text: "That request is no longer waiting for an answer. Nothing was done." };
    // A resume that cannot succeed however often it is tried: the client stops following the turn at once.
    case "RESUME_TOKEN_INVALID":
      return { ...base, text: "This answer can't be followed any more from here. Ask again to continue." };
    case "RESUME_EVENTS_EXPIRED":
      return { ...base, text: "The rest of this answer is no longer kept, so it can't be shown. Ask again to continue." };
    case "RESUME_SEQUENCE_AHEAD":
      return { ...base, text: "This answer can't be picked up where it was left. Ask again to continue." };
    case "INVALID_ARGUMENT": {
      const fields = failure.findDetails(BadRequestSchema)[0]?.fieldViolations ?? [];
      const list = fields.map((v) => v.description).join("; ");
      return { ...base, text: list ? `Please check: ${list}.` : "Please check what you entered." };
    }
    case "NOT_IMPLEMENTED":
    case "METHOD_NOT_FOUND":
      return { ...base, text: "That part of the service isn't available here yet." };
    case "":
      break;
    default:
      return { ...base, text: "Something went wrong on our side. Please try again.", retryable: true };
  }
  // No ErrorInfo: the gateway never answered (network down, server gone) or a proxy did.
  if (failure.code === Code.Canceled) return { ...base, text: "Stopped." };
  if (failure.code === Code.DeadlineExceeded) {
    return { ...base, retryable: true, text: "The booking service took too long to answer. Please retry." };
  }
  return {
    ...base,
    retryable: true,
    text: "Can't reach the booking service. Check your connection, then retry.",
  };
}
