// The browser chat: streams the agent's turn, signs the person in when the agent delivers tokens (or through
// the Sign in form), keeps the session across reloads, lists "My reservations", signs out.

import "./style.css";
import { Gateway, protocolFromPage } from "./api.js";
import { SIGN_IN_ENDED, explain, type Explained } from "./errors.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { StopReason, type ApprovalRequested, type ChatEvent, type ChatRequestSchema } from "./gen/booking/v1/chat_pb.js";
import { ReservationStatus, type Reservation } from "./gen/booking/v1/reservations_pb.js";
import { clearTurn, loadTurn, online, resumeDelays, saveTurn, type KeptTurn } from "./resume.js";
import { loadChatSessionId, saveChatSessionId, type StoredSession } from "./session.js";

const TRANSCRIPT_KEY = "booking_transcript";
const TRANSCRIPT_LIMIT = 200;

function el<T extends HTMLElement>(testId: string): T {
  const found = document.querySelector<T>(`[data-testid="${testId}"]`);
  if (!found) throw new Error(`missing element ${testId}`);
  return found;
}

const ui = {
  status: el("auth-status"),
  signIn: el<HTMLButtonElement>("signin-button"),
  signOut: el<HTMLButtonElement>("signout-button"),
  reservationsButton: el<HTMLButtonElement>("reservations-button"),
  signInPanel: el("signin-panel"),
  emailForm: el<HTMLFormElement>("signin-email-form"),
  codeForm: el<HTMLFormElement>("signin-code-form"),
  email: el<HTMLInputElement>("login-email"),
  name: el<HTMLInputElement>("login-name"),
  code: el<HTMLInputElement>("login-code"),
  codeSent: el("code-sent"),
  signInError: el("signin-error"),
  signInCancel: el<HTMLButtonElement>("signin-cancel"),
  codeRestart: el<HTMLButtonElement>("code-restart"),
  reservationsPanel: el("reservations-panel"),
  reservationsList: el<HTMLUListElement>("reservations-list"),
  reservationsEmpty: el("reservations-empty"),
  reservationsClose: el<HTMLButtonElement>("reservations-close"),
  messages: el<HTMLOListElement>("message-list"),
  banner: el("error-banner"),
  bannerText: el("error-text"),
  retry: el<HTMLButtonElement>("retry-button"),
  form: el<HTMLFormElement>("chat-form"),
  input: el<HTMLTextAreaElement>("chat-input"),
  send: el<HTMLButtonElement>("send-button"),
};

const gateway = new Gateway(window.location.origin, protocolFromPage());
let chatSessionId = loadChatSessionId();
let streaming: AbortController | null = null;
// The keep_running turn being shown: Stop cancels it in the gateway (CancelTurn) rather than only the stream.
let keptTurn: KeptTurn | null = null;
let pendingLoginId = "";

// ---- transcript --------------------------------------------------------------------------------------------

type Entry = { role: "user" | "assistant" | "notice" | "tool"; text: string; state?: string };

/**
 * What an approval card needs to be shown again, and to decide, after a reload: never a token (deciding needs the
 * person's bearer, which the session keeps). `expiresAt` in ms since the epoch.
 */
type Asked = { approvalId: string; toolName: string; summary: string; expiresAt: number };

/** A card kept across a reload: open (it still works) or expired (it says so). Decided ones are kept as notes. */
type KeptApproval = { role: "approval"; state: "open" | "expired"; approval: Asked };

type Kept = Entry | KeptApproval;

// What each approval card on the page asked (kept out of the DOM's attributes: the page shows the summary).
const cards = new WeakMap<HTMLElement, Asked>();

function isAsked(value: unknown): value is Asked {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    typeof v.approvalId === "string" &&
    typeof v.toolName === "string" &&
    typeof v.summary === "string" &&
    typeof v.expiresAt === "number"
  );
}

function loadTranscript(resuming: boolean): Kept[] {
  try {
    const parsed: unknown = JSON.parse(sessionStorage.getItem(TRANSCRIPT_KEY) ?? "[]");
    // A restored message is finished: only the reply being streamed now shows the caret (the last one, when a
    // kept turn is resumed after the reload and carries on in it).
    if (!Array.isArray(parsed)) return [];
    const entries = (parsed as Kept[]).filter((entry) => entry.role !== "approval" || isAsked(entry.approval));
    return entries.map((entry, i) =>
      entry.role === "approval"
        ? entry
        : { ...entry, state: resuming && i === entries.length - 1 ? entry.state : settled(entry.state) },
    );
  } catch {
    return [];
  }
}

/** A message's state as restored: "streaming" only for the reply a resumed kept turn carries on in. */
function settled(state: string | undefined): string | undefined {
  return state === "streaming" ? undefined : state;
}

function saveTranscript(): void {
  const entries: Kept[] = [];
  for (const item of Array.from(ui.messages.children)) {
    const node = item as HTMLElement;
    if (node.dataset.role === "approval") {
      const approval = cards.get(node);
      const state = node.dataset.state;
      if (approval && (state === "open" || state === "sending" || state === "expired")) {
        // Still open (or its decision not yet taken by the gateway): a reloaded page shows the card again and can
        // decide (the gateway keeps the pending action; a decision it already took is refused and said so).
        // An expired one comes back as expired, and keeps no id: nothing can decide it any more.
        const kept = state === "expired" ? { ...approval, approvalId: "" } : approval;
        entries.push({ role: "approval", state: state === "expired" ? "expired" : "open", approval: kept });
      } else {
        // Decided or withdrawn: what was asked, as a line.
        entries.push({ role: "notice", text: `Asked for approval: ${approval?.summary ?? ""}` });
      }
      continue;
    }
    const role = node.dataset.role as Entry["role"] | undefined;
    if (!role) continue;
    // Kept as shown: the reply being streamed is settled on load unless its kept turn is resumed (loadTranscript).
    entries.push({ role, text: node.textContent ?? "", state: node.dataset.state });
  }
  sessionStorage.setItem(TRANSCRIPT_KEY, JSON.stringify(entries.slice(-TRANSCRIPT_LIMIT)));
}

function add(entry: Entry): HTMLLIElement {
  const item = document.createElement("li");
  item.dataset.role = entry.role;
  const testIds = { user: "user-message", assistant: "assistant-message", notice: "notice", tool: "tool-event" };
  item.dataset.testid = testIds[entry.role];
  item.className = entry.role === "tool" ? `tool ${entry.state ?? ""}` : `msg ${entry.role} ${entry.state ?? ""}`;
  if (entry.state) item.dataset.state = entry.state;
  item.textContent = entry.text;
  ui.messages.append(item);
  item.scrollIntoView({ block: "end" });
  return item;
}

// ---- status and session ------------------------------------------------------------------------------------

function renderSession(session: StoredSession | null): void {
  const signedIn = session !== null;
  ui.status.textContent = signedIn ? `Signed in as ${session.email}` : "Not signed in";
  ui.status.classList.toggle("signed-in", signedIn);
  ui.signIn.hidden = signedIn;
  ui.signOut.hidden = !signedIn;
  ui.reservationsButton.hidden = !signedIn;
  if (signedIn) ui.signInPanel.hidden = true;
  else ui.reservationsPanel.hidden = true;
}

gateway.onSessionChange((session, why) => {
  renderSession(session);
  if (why === "signed-in" && session) {
    add({ role: "notice", text: `You're signed in as ${session.email}.`, state: "ok" });
    saveTranscript();
  } else if (why === "signed-out") {
    // A conversation bound to the person who signed out cannot continue anonymously: start a new one.
    chatSessionId = "";
    saveChatSessionId("");
  }
});

// ---- errors ------------------------------------------------------------------------------------------------

function showError(explained: Explained, retry: (() => void) | null): void {
  ui.bannerText.textContent = explained.text;
  ui.retry.hidden = !(explained.retryable && retry);
  ui.retry.onclick = retry
    ? () => {
        hideError();
        retry();
      }
    : null;
  ui.banner.hidden = false;
  if (!ui.retry.hidden) ui.retry.focus();
}

function hideError(): void {
  ui.banner.hidden = true;
  ui.retry.onclick = null;
}

// ---- chat --------------------------------------------------------------------------------------------------

const TOOL_LABELS: Record<string, string> = {
  list_properties: "Looking up places to stay",
  check_availability: "Checking availability",
  create_reservation: "Booking",
  list_my_reservations: "Looking up your reservations",
  cancel_reservation: "Cancelling",
  start_login: "Sending a sign-in code",
  verify_code: "Checking your code",
};

function toolLabel(name: string): string {
  return TOOL_LABELS[name] ?? name.replaceAll("_", " ");
}

function setStreaming(controller: AbortController | null): void {
  streaming = controller;
  ui.send.textContent = controller ? "Stop" : "Send";
  ui.send.setAttribute("aria-label", controller ? "Stop the reply" : "Send");
  ui.form.setAttribute("aria-busy", controller ? "true" : "false");
}

type Shown = {
  reply: HTMLLIElement | null;
  tools: Map<string, HTMLLIElement>;
  received: boolean;
  ended: boolean;
  // The approval card this turn opened (keyboard focus goes to it when the turn ends).
  asked?: HTMLLIElement | null;
  // Shown while the turn is being resumed; removed when its next event arrives.
  notice?: HTMLLIElement | null;
  // Called once, when the gateway has taken the turn (its SessionStarted).
  started?: (() => void) | undefined;
};

type ChatStream = AsyncIterable<{ event?: ChatEvent }>;

/** Show a turn's events; each sequence once (a resume may overlap what was shown), kept in sessionStorage. */
async function show(stream: ChatStream, shown: Shown): Promise<void> {
  for await (const response of stream) {
    shown.received = true;
    shown.notice?.remove();
    shown.notice = null;
    const event = response.event;
    if (!event) continue;
    if (keptTurn && event.sequence <= BigInt(keptTurn.lastSequence)) continue;
    const kind = event.kind;
    switch (kind.case) {
      case "sessionStarted":
        chatSessionId = kind.value.sessionId;
        saveChatSessionId(chatSessionId);
        shown.started?.();
        shown.started = undefined;
        if (kind.value.resumeToken) {
          keptTurn = { sessionId: chatSessionId, resumeToken: kind.value.resumeToken, lastSequence: "0" };
        }
        break;
      case "textDelta":
        shown.reply ??= add({ role: "assistant", text: "", state: "streaming" });
        shown.reply.textContent += kind.value.text;
        shown.reply.scrollIntoView({ block: "end" });
        break;
      case "toolCallStarted":
        // Text after a tool belongs in a new bubble, below the tool's line.
        shown.reply?.classList.remove("streaming");
        if (shown.reply) delete shown.reply.dataset.state;
        shown.reply = null;
        shown.tools.set(
          kind.value.callId,
          add({ role: "tool", text: `${toolLabel(kind.value.name)}…`, state: "running" }),
        );
        break;
      case "toolCallFinished": {
        const state = kind.value.ok ? "ok" : "failed";
        const label = toolLabel(kind.value.name);
        const text = kind.value.summary ? `${label}: ${kind.value.summary}` : label;
        const line = shown.tools.get(kind.value.callId) ?? add({ role: "tool", text, state });
        line.textContent = text;
        line.className = `tool ${state}`;
        line.dataset.state = state;
        break;
      }
      case "tokenDelivery":
        gateway.signedIn(kind.value);
        break;
      case "approvalRequested":
        shown.reply?.classList.remove("streaming");
        if (shown.reply) delete shown.reply.dataset.state;
        shown.reply = null;
        shown.asked = cardFor(kind.value.approvalId) ?? approvalCard(askedBy(kind.value));
        break;
      case "tokenDeliveryExpired":
        add({ role: "notice", text: "A sign-in in this chat can no longer be completed here. Please sign in again." });
        break;
      case "turnComplete":
        shown.ended = true;
        if (kind.value.stopReason === StopReason.CANCELLED) {
          add({ role: "notice", text: "Stopped." });
        } else if (![StopReason.END_TURN, StopReason.AWAITING_APPROVAL].includes(kind.value.stopReason)) {
          add({ role: "notice", text: "The assistant stopped before finishing. You can ask again." });
        }
        break;
    }
    if (keptTurn) {
      keptTurn.lastSequence = event.sequence.toString();
      if (shown.ended) {
        keptTurn = null;
        clearTurn();
      } else {
        saveTurn(keptTurn);
      }
    }
    // Kept as it grows, so that a reload shows what was shown and resumes after it.
    saveTranscript();
  }
}

/**
 * A signal for one stream of the turn: aborted when the person stops the turn, and when the browser goes offline
 * (the stream is going nowhere then; the turn is resumed once the browser is back online).
 */
function streamSignal(controller: AbortController): { signal: AbortSignal; release: () => void } {
  const stream = new AbortController();
  const cut = () => {
    offlineCut = true;
    stream.abort();
  };
  const stop = () => stream.abort();
  window.addEventListener("offline", cut);
  controller.signal.addEventListener("abort", stop);
  return {
    signal: stream.signal,
    release: () => {
      window.removeEventListener("offline", cut);
      controller.signal.removeEventListener("abort", stop);
    },
  };
}

let offlineCut = false;

const GAVE_UP: Explained = {
  text: "The connection keeps dropping, so the rest of this answer isn't shown. Retry to pick it up again.",
  reason: "",
  retryable: true,
  retryAfterSeconds: null,
  signedOut: false,
};

/**
 * Follow the kept turn again after its stream dropped (or the page reloaded), backing off, until it ends. The
 * backoff starts again after any new event (8 attempts in a row without one give up, like the Python and Node
 * clients). A refusal that cannot change (RESUME_TOKEN_INVALID, RESUME_EVENTS_EXPIRED, ...) ends it at once.
 * Either way the kept turn is forgotten and the page says why. True when the turn was shown to its end.
 */
async function resumeTurn(shown: Shown, controller: AbortController): Promise<boolean> {
  let delays = resumeDelays();
  let renewed = false;
  for (let next = delays.next(); !next.done; next = delays.next()) {
    const turn = keptTurn;
    if (!turn) return false;
    if (controller.signal.aborted) return await cancelKept(turn, shown);
    shown.notice ??= add({ role: "notice", text: "Reconnecting…", state: "reconnecting" });
    await new Promise((resolve) => setTimeout(resolve, next.value));
    await online();
    // Stop pressed while the gateway could not be told (offline): tell it now instead of resuming.
    if (controller.signal.aborted) return await cancelKept(turn, shown);
    const { signal, release } = streamSignal(controller);
    offlineCut = false;
    const seen = turn.lastSequence;
    try {
      const stream = gateway.chat.resumeChat(
        { sessionId: turn.sessionId, afterSequence: BigInt(turn.lastSequence), resumeToken: turn.resumeToken },
        { signal },
      );
      await show(stream, shown);
      if (shown.ended) return true;
    } catch (error) {
      if (controller.signal.aborted) return await cancelKept(turn, shown);
      if (offlineCut) continue;
      const explained = explain(error);
      if (explained.reason === "TOKEN_EXPIRED") {
        // The same expired token would be refused however often it is sent: renew the session once and resume
        // again. When it cannot be renewed (or expires again), stop here and say why: a refused renewal has
        // forgotten the session; an unreachable one kept it, and Retry resumes.
        const failure = renewed ? explained : await renewal(explained);
        renewed = true;
        if (!failure) continue;
        shown.notice?.remove();
        keptTurn = null;
        clearTurn();
        const reply = shown.reply;
        showError(failure, failure.retryable ? () => void resumeAfterReload(turn, reply) : null);
        return false;
      }
      if (!explained.retryable && explained.reason) {
        keptTurn = null;
        clearTurn();
        shown.notice?.remove();
        showError(explained, null);
        return false;
      }
    } finally {
      release();
      // Progress: the next cut starts the backoff again.
      if (keptTurn && keptTurn.lastSequence !== seen) delays = resumeDelays();
    }
  }
  shown.notice?.remove();
  const turn = keptTurn;
  keptTurn = null;
  clearTurn();
  // Not on every reload: the person asks for it (and the rest goes on in the same bubble).
  const reply = shown.reply;
  if (turn) showError(GAVE_UP, () => void resumeAfterReload(turn, reply));
  return false;
}

/**
 * Stop was pressed but its CancelTurn never reached the gateway (offline, unreachable): send it again and end
 * the turn here. Answers false (the turn was not shown to its end).
 */
async function cancelKept(turn: KeptTurn, shown: Shown): Promise<false> {
  shown.notice?.remove();
  shown.notice = null;
  keptTurn = null;
  clearTurn();
  try {
    await gateway.chat.cancelTurn({ sessionId: turn.sessionId, resumeToken: turn.resumeToken });
    add({ role: "notice", text: "Stopped." });
  } catch (error) {
    const explained = explain(error);
    const text = `Stopped here, but the booking service could not be told, so the answer may still finish there. ${explained.text}`;
    showError({ ...explained, text, retryable: false }, null);
  }
  return false;
}

// ---- approvals: bookings and cancellations wait for the person's decision ----------------------------------

type Decision = "approved" | "declined";

/** Close every open approval card (a new message withdraws it, or it expired, or it was decided). */
function closeApprovals(state: string, note: string): void {
  for (const card of Array.from(ui.messages.querySelectorAll<HTMLElement>("[data-testid=approval-card]"))) {
    if (card.dataset.state !== "open") continue;
    closeApproval(card, state, note);
  }
}

const EXPIRED_NOTE = "This request expired; nothing was done. Ask again.";
const ALREADY_DECIDED_NOTE =
  "Already answered: your earlier decision most likely reached the booking service after all. Check My reservations to see what was done.";

function closeApproval(card: HTMLElement, state: string, note: string): void {
  card.dataset.state = state;
  card.className = `approval ${state}`;
  for (const button of Array.from(card.querySelectorAll("button"))) button.disabled = true;
  const status = card.querySelector<HTMLElement>("[data-testid=approval-status]");
  if (status) status.textContent = note;
  const timer = Number(card.dataset.timer ?? "0");
  if (timer) window.clearTimeout(timer);
}

/** A card whose decision the gateway never took: open again, saying so (or expired, when its time is up). */
function reopenApproval(card: HTMLElement, asked: Asked, failure: Explained | null): void {
  if (asked.expiresAt <= Date.now()) {
    closeApproval(card, "expired", EXPIRED_NOTE);
    return;
  }
  card.dataset.state = "open";
  card.className = "approval open";
  for (const button of Array.from(card.querySelectorAll("button"))) button.disabled = false;
  const status = card.querySelector<HTMLElement>("[data-testid=approval-status]");
  const why = failure ? ` ${failure.text}` : "";
  const until = new Date(asked.expiresAt).toLocaleTimeString();
  // The gateway takes a decision before its turn's SessionStarted, and the turn keeps running without this page:
  // a stream cut after the request got there may have left it decided (and done). Deciding again is safe: a
  // second decision is refused (APPROVAL_ALREADY_USED) when the first was taken.
  card.dataset.resent = "true";
  if (status)
    status.textContent = `Your decision may not have reached the booking service.${why} Deciding again is safe (it is refused if the first one was taken); you can decide until ${until}.`;
  card.dataset.timer = String(
    window.setTimeout(() => {
      if (card.dataset.state !== "open") return;
      closeApproval(card, "expired", EXPIRED_NOTE);
      saveTranscript();
    }, Math.max(asked.expiresAt - Date.now(), 0)),
  );
}

function askedBy(event: ApprovalRequested): Asked {
  const expiresAt = event.expiresAt
    ? Number(event.expiresAt.seconds) * 1000 + Math.floor(event.expiresAt.nanos / 1e6)
    : Date.now() + 600_000;
  return { approvalId: event.approvalId, toolName: event.toolName, summary: event.summary, expiresAt };
}

/** The card on the page for this approval, if any (a resumed turn may replay what a reload restored). */
function cardFor(approvalId: string): HTMLLIElement | null {
  for (const card of Array.from(ui.messages.querySelectorAll<HTMLLIElement>("[data-testid=approval-card]"))) {
    if (approvalId && cards.get(card)?.approvalId === approvalId) return card;
  }
  return null;
}

function approvalCard(asked: Asked): HTMLLIElement {
  const card = document.createElement("li");
  cards.set(card, asked);
  card.dataset.role = "approval";
  card.dataset.testid = "approval-card";
  card.dataset.state = "open";
  card.className = "approval open";
  card.setAttribute("role", "group");
  card.setAttribute("aria-label", asked.toolName === "cancel_reservation" ? "Approve this cancellation?" : "Approve this booking?");
  const summary = document.createElement("p");
  summary.dataset.testid = "approval-summary";
  summary.textContent = asked.summary;
  const expires = new Date(asked.expiresAt);
  const status = document.createElement("p");
  status.dataset.testid = "approval-status";
  status.className = "approval-status";
  status.textContent = `Nothing happens until you decide (until ${expires.toLocaleTimeString()}).`;
  const actions = document.createElement("div");
  actions.className = "actions";
  const approve = document.createElement("button");
  approve.type = "button";
  approve.dataset.testid = "approve-button";
  approve.textContent = asked.toolName === "cancel_reservation" ? "Approve cancellation" : "Approve booking";
  const decline = document.createElement("button");
  decline.type = "button";
  decline.className = "quiet";
  decline.dataset.testid = "decline-button";
  decline.textContent = "Decline";
  const decide = (decision: Decision): void => {
    if (card.dataset.state !== "open" || streaming) return;
    // Disabled while the decision is on its way; it says what was decided only once the gateway took it.
    closeApproval(card, "sending", "Sending your decision…");
    let taken = false;
    const approved = decision === "approved";
    const request = { sessionId: chatSessionId, decision: { approvalId: asked.approvalId, approve: approved } };
    const started = (): void => {
      taken = true;
      closeApproval(card, decision, approved ? "Approved." : "Declined: nothing was done.");
    };
    void turn(request, "", 0, started).then((refused) => {
      if (taken) return;
      // Refused (expired, or no longer waiting: answered or withdrawn elsewhere, say in another tab): the card
      // says so rather than what was clicked; a reload then shows it expired, or as a line.
      if (refused?.reason.startsWith("APPROVAL_")) {
        if (refused.reason === "APPROVAL_EXPIRED") closeApproval(card, "expired", EXPIRED_NOTE);
        else if (refused.reason === "APPROVAL_ALREADY_USED" && card.dataset.resent) {
          // Decided again after a call that failed: the first decision most likely reached the gateway after all.
          hideError();
          closeApproval(card, "answered", ALREADY_DECIDED_NOTE);
        } else closeApproval(card, "withdrawn", refused.text);
      } else {
        // Never taken (offline, refused before the turn started, stopped): the approval still waits.
        reopenApproval(card, asked, refused);
      }
      saveTranscript();
    });
  };
  approve.addEventListener("click", () => decide("approved"));
  decline.addEventListener("click", () => decide("declined"));
  actions.append(approve, decline);
  card.append(summary, status, actions);
  ui.messages.append(card);
  card.scrollIntoView({ block: "end" });
  const left = expires.getTime() - Date.now();
  card.dataset.timer = String(
    window.setTimeout(() => {
      if (card.dataset.state !== "open") return;
      closeApproval(card, "expired", EXPIRED_NOTE);
      saveTranscript(); // a reload shows it expired
    }, Math.max(left, 0)),
  );
  return card;
}

function resumable(error: unknown, controller: AbortController): boolean {
  return keptTurn !== null && !controller.signal.aborted && (offlineCut || !navigator.onLine || explain(error).retryable);
}

async function chat(text: string): Promise<void> {
  // A message the gateway took instead of a decision withdraws what was waiting for it (the gateway does the
  // same); one that never got there withdraws nothing.
  const withdraw = (): void => closeApprovals("withdrawn", "Withdrawn by your new message: nothing was done.");
  await turn({ sessionId: chatSessionId, message: text }, text, 0, withdraw);
}

/**
 * One turn (a message, or a decision on an approval), kept running in the gateway and resumed when cut. Answers
 * the gateway's refusal when it refused the turn outright (a decision on an approval no longer waiting), or null.
 */
async function turn(
  request: MessageInitShape<typeof ChatRequestSchema>,
  text = "",
  attempt = 0,
  started?: () => void,
): Promise<Explained | null> {
  const controller = new AbortController();
  setStreaming(controller);
  hideError();
  keptTurn = null;
  clearTurn();
  const shown: Shown = { reply: null, tools: new Map(), received: false, ended: false, started };
  const { signal, release } = streamSignal(controller);
  offlineCut = false;
  try {
    const stream = gateway.chat.chat({ ...request, sessionId: chatSessionId, keepRunning: true }, { signal });
    await show(stream, shown);
    if (!shown.ended && keptTurn) await resumeTurn(shown, controller);
  } catch (error) {
    const explained = explain(error);
    if (resumable(error, controller)) {
      // It says why when it cannot show the rest.
      await resumeTurn(shown, controller);
    } else if (controller.signal.aborted) {
      if (keptTurn) await cancelKept(keptTurn, shown);
      else add({ role: "notice", text: "Stopped." });
    } else if (!shown.received && attempt === 0 && explained.reason === "TOKEN_EXPIRED") {
      const failure = await renewal(explained);
      if (!failure) {
        shown.reply?.remove();
        return await turn(request, text, attempt + 1, shown.started);
      }
      showError(failure, text ? () => void turn(request, text, 0, started) : null);
      return failure;
    } else if (
      !shown.received &&
      attempt === 0 &&
      text &&
      ["SESSION_NOT_FOUND", "SESSION_NOT_OWNED"].includes(explained.reason)
    ) {
      chatSessionId = "";
      saveChatSessionId("");
      add({ role: "notice", text: explained.text });
      return await turn(request, text, attempt + 1, shown.started);
    } else {
      if (explained.signedOut) gateway.dropSession();
      // A refused decision (expired, already used) cannot be retried: only a message can.
      showError(explained, text ? () => void turn(request, text, 0, started) : null);
      return explained;
    }
  } finally {
    release();
    finishTurn(shown, controller);
  }
  return null;
}

/**
 * After TOKEN_EXPIRED: renew the session. Null when renewed (retry the call once); otherwise what to show: the
 * session is kept when the renewal could not reach the service (retryable), forgotten when it was refused.
 */
async function renewal(expired: Explained): Promise<Explained | null> {
  const outcome = await gateway.renew();
  if (outcome === "renewed") return null;
  if (outcome === "refused") return { ...expired, text: SIGN_IN_ENDED, retryable: false, signedOut: true };
  return expired;
}

function finishTurn(shown: Shown, controller: AbortController): void {
  shown.reply?.classList.remove("streaming");
  if (shown.reply) delete shown.reply.dataset.state;
  if (streaming === controller) setStreaming(null);
  // Counts finished turns (tests and assistive tools can wait on it).
  ui.form.dataset.turns = String(Number(ui.form.dataset.turns ?? "0") + 1);
  saveTranscript();
  // The question is what the person answers next: keyboard focus goes to it.
  if (shown.asked?.dataset.state === "open") {
    shown.asked.querySelector<HTMLButtonElement>("[data-testid=approve-button]")?.focus();
  }
}

/** Stop: the kept turn is cancelled in the gateway and its stream ends with TurnComplete(CANCELLED). */
function stop(): void {
  const turn = keptTurn;
  if (!turn) {
    streaming?.abort();
    return;
  }
  gateway.chat.cancelTurn({ sessionId: turn.sessionId, resumeToken: turn.resumeToken }).catch(() => streaming?.abort());
}

/** After a reload in the middle of a turn (or Retry after a resume gave up): show the rest of it. */
async function resumeAfterReload(turn: KeptTurn, shownReply: HTMLLIElement | null = null): Promise<void> {
  keptTurn = turn;
  saveTurn(turn);
  const controller = new AbortController();
  setStreaming(controller);
  const last = ui.messages.lastElementChild as HTMLLIElement | null;
  const reply = shownReply ?? (last?.dataset.role === "assistant" && last.dataset.state === "streaming" ? last : null);
  if (reply) {
    reply.dataset.state = "streaming";
    reply.classList.add("streaming");
  }
  const shown: Shown = { reply, tools: new Map(), received: false, ended: false };
  try {
    await resumeTurn(shown, controller);
  } finally {
    finishTurn(shown, controller);
  }
}

ui.form.addEventListener("submit", (event) => {
  event.preventDefault();
  if (streaming) {
    stop();
    return;
  }
  const text = ui.input.value.trim();
  if (!text) return;
  ui.input.value = "";
  add({ role: "user", text });
  void chat(text);
});

ui.input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    ui.form.requestSubmit();
  } else if (event.key === "Escape" && streaming) {
    stop();
  }
});

// ---- sign in with the form (AuthService.InitiateLogin / VerifyOtp) -------------------------------------------

function signInError(error: unknown): void {
  ui.signInError.textContent = explain(error).text;
  ui.signInError.hidden = false;
}

function openSignIn(): void {
  ui.reservationsPanel.hidden = true;
  ui.signInPanel.hidden = false;
  ui.signInError.hidden = true;
  ui.emailForm.hidden = false;
  ui.codeForm.hidden = true;
  ui.email.focus();
}

ui.signIn.addEventListener("click", openSignIn);
ui.signInCancel.addEventListener("click", () => {
  ui.signInPanel.hidden = true;
  ui.signIn.focus();
});
ui.codeRestart.addEventListener("click", openSignIn);

ui.emailForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  ui.signInError.hidden = true;
  const button = el<HTMLButtonElement>("login-submit");
  button.disabled = true;
  try {
    const answer = await gateway.auth.initiateLogin({ email: ui.email.value.trim(), name: ui.name.value.trim() });
    pendingLoginId = answer.loginId;
    const expires = answer.expiresAt
      ? ` It works until ${new Date(Number(answer.expiresAt.seconds) * 1000).toLocaleTimeString([], {
          hour: "2-digit",
          minute: "2-digit",
        })}.`
      : "";
    ui.codeSent.textContent = `We sent a code to ${answer.destination}.${expires}`;
    ui.emailForm.hidden = true;
    ui.codeForm.hidden = false;
    ui.code.value = "";
    ui.code.focus();
  } catch (error) {
    signInError(error);
  } finally {
    button.disabled = false;
  }
});

ui.codeForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  ui.signInError.hidden = true;
  const button = el<HTMLButtonElement>("code-submit");
  button.disabled = true;
  try {
    const answer = await gateway.auth.verifyOtp({ loginId: pendingLoginId, code: ui.code.value.trim() });
    if (answer.tokenDelivery) gateway.signedIn(answer.tokenDelivery);
    pendingLoginId = "";
    ui.input.focus();
  } catch (error) {
    signInError(error);
    ui.code.select();
  } finally {
    button.disabled = false;
  }
});

// ---- sign out ----------------------------------------------------------------------------------------------

ui.signOut.addEventListener("click", async () => {
  ui.signOut.disabled = true;
  let notice = "You're signed out.";
  try {
    await gateway.signOut();
  } catch (error) {
    // Signed out here all the same; the gateway will refuse the old token once it hears of it.
    notice = `You're signed out on this device. (${explain(error).text})`;
  } finally {
    // The conversation (with the person's email in it) leaves the screen and the storage: a fresh start.
    ui.messages.replaceChildren();
    sessionStorage.removeItem(TRANSCRIPT_KEY);
    greet();
    add({ role: "notice", text: notice });
    ui.signOut.disabled = false;
    saveTranscript();
    ui.signIn.focus();
  }
});

// ---- my reservations ---------------------------------------------------------------------------------------

// One money format everywhere (the agent's text, the gateway's approval summaries, booking-chat): the amount with
// two decimals, then the currency code from the property data, like "945.00 USD".
function money(cents: bigint, currency: string): string {
  const sign = cents < 0n ? "-" : "";
  const whole = cents < 0n ? -cents : cents;
  return `${sign}${whole / 100n}.${(whole % 100n).toString().padStart(2, "0")} ${currency}`;
}

function renderReservation(reservation: Reservation): HTMLLIElement {
  const item = document.createElement("li");
  item.dataset.testid = "reservation-item";
  const title = document.createElement("strong");
  title.textContent = `${reservation.propertyName || reservation.propertyId}, ${reservation.checkIn} → ${
    reservation.checkOut
  }`;
  const meta = document.createElement("div");
  meta.className = "meta";
  const status = reservation.status === ReservationStatus.CANCELLED ? "cancelled" : "confirmed";
  meta.textContent = `${reservation.reservationId} · ${reservation.guests} ${
    reservation.guests === 1 ? "guest" : "guests"
  } · ${money(reservation.totalCents, reservation.currency)} · ${status}`;
  item.append(title, meta);
  return item;
}

async function showReservations(attempt = 0): Promise<void> {
  ui.signInPanel.hidden = true;
  ui.reservationsPanel.hidden = false;
  ui.reservationsList.replaceChildren();
  ui.reservationsEmpty.hidden = true;
  try {
    const answer = await gateway.reservations.listReservations({ pageSize: 50 });
    ui.reservationsList.replaceChildren(...answer.reservations.map(renderReservation));
    ui.reservationsEmpty.hidden = answer.reservations.length > 0;
  } catch (error) {
    const explained = explain(error);
    if (attempt === 0 && explained.reason === "TOKEN_EXPIRED") {
      const failure = await renewal(explained);
      if (!failure) return await showReservations(attempt + 1);
      showError(failure, () => void showReservations());
    } else {
      if (explained.signedOut) gateway.dropSession();
      showError(explained, () => void showReservations());
    }
  }
  ui.reservationsClose.focus();
}

ui.reservationsButton.addEventListener("click", () => void showReservations());
ui.reservationsClose.addEventListener("click", () => {
  ui.reservationsPanel.hidden = true;
  ui.reservationsButton.focus();
});

// ---- start -------------------------------------------------------------------------------------------------

renderSession(gateway.current);
function greet(): void {
  add({
    role: "assistant",
    text: "Hi! I can check availability and book a stay. Try “What's free next friday for 2 nights?”",
  });
}

const interrupted = loadTurn();
const transcript = loadTranscript(interrupted !== null);
for (const entry of transcript) {
  if (entry.role !== "approval") {
    add(entry);
    continue;
  }
  // A card still open works again (its timer closes it when it expires); one past its time shows as expired.
  const card = approvalCard(entry.approval);
  if (entry.state === "expired" || entry.approval.expiresAt <= Date.now()) {
    closeApproval(card, "expired", EXPIRED_NOTE);
  }
}
if (transcript.length === 0) greet();
ui.input.focus();
if (interrupted) void resumeAfterReload(interrupted);
