// The browser chat: streams the agent's turn, signs the person in when the agent delivers tokens (or through
// the Sign in form), keeps the session across reloads, lists "My reservations", signs out.

import "./style.css";
import { Gateway, protocolFromPage } from "./api.js";
import { explain, type Explained } from "./errors.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { StopReason, type ApprovalRequested, type ChatRequestSchema } from "./gen/booking/v1/chat_pb.js";
import { ReservationStatus, type Reservation } from "./gen/booking/v1/reservations_pb.js";
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
let pendingLoginId = "";

// ---- transcript --------------------------------------------------------------------------------------------

type Entry = { role: "user" | "assistant" | "notice" | "tool"; text: string; state?: string };

function loadTranscript(): Entry[] {
  try {
    const parsed: unknown = JSON.parse(sessionStorage.getItem(TRANSCRIPT_KEY) ?? "[]");
    // A restored message is finished: only the reply being streamed now shows the caret.
    if (!Array.isArray(parsed)) return [];
    return (parsed as Entry[]).map((entry) => ({ ...entry, state: settled(entry.state) }));
  } catch {
    return [];
  }
}

/** A message's state as kept: "streaming" is never kept (after a reload nothing is streaming). */
function settled(state: string | undefined): string | undefined {
  return state === "streaming" ? undefined : state;
}

function saveTranscript(): void {
  const entries: Entry[] = [];
  for (const item of Array.from(ui.messages.children)) {
    const node = item as HTMLElement;
    if (node.dataset.role === "approval") {
      // A reloaded page cannot decide any more: the card comes back as a line saying what was asked.
      const summary = node.querySelector("[data-testid=approval-summary]")?.textContent ?? "";
      entries.push({ role: "notice", text: `Asked for approval: ${summary}` });
      continue;
    }
    const role = node.dataset.role as Entry["role"] | undefined;
    if (!role) continue;
    entries.push({ role, text: node.textContent ?? "", state: settled(node.dataset.state) });
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

// ---- approvals: bookings and cancellations wait for the person's decision ----------------------------------

type Decision = "approved" | "declined";

/** Close every open approval card (a new message withdraws it, or it expired, or it was decided). */
function closeApprovals(state: string, note: string): void {
  for (const card of Array.from(ui.messages.querySelectorAll<HTMLElement>("[data-testid=approval-card]"))) {
    if (card.dataset.state !== "open") continue;
    closeApproval(card, state, note);
  }
}

function closeApproval(card: HTMLElement, state: string, note: string): void {
  card.dataset.state = state;
  card.className = `approval ${state}`;
  for (const button of Array.from(card.querySelectorAll("button"))) button.disabled = true;
  const status = card.querySelector<HTMLElement>("[data-testid=approval-status]");
  if (status) status.textContent = note;
  const timer = Number(card.dataset.timer ?? "0");
  if (timer) window.clearTimeout(timer);
}

function approvalCard(asked: ApprovalRequested): HTMLLIElement {
  const card = document.createElement("li");
  card.dataset.role = "approval";
  card.dataset.testid = "approval-card";
  card.dataset.state = "open";
  card.className = "approval open";
  card.setAttribute("role", "group");
  card.setAttribute("aria-label", asked.toolName === "cancel_reservation" ? "Approve this cancellation?" : "Approve this booking?");
  const summary = document.createElement("p");
  summary.dataset.testid = "approval-summary";
  summary.textContent = asked.summary;
  const expires = asked.expiresAt
    ? new Date(Number(asked.expiresAt.seconds) * 1000 + Math.floor(asked.expiresAt.nanos / 1e6))
    : new Date(Date.now() + 600_000);
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
    closeApproval(card, decision, decision === "approved" ? "Approved." : "Declined: nothing was done.");
    void turn({ sessionId: chatSessionId, decision: { approvalId: asked.approvalId, approve: decision === "approved" } });
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
      if (card.dataset.state === "open") closeApproval(card, "expired", "This request expired; nothing was done. Ask again.");
    }, Math.max(left, 0)),
  );
  return card;
}

async function chat(text: string): Promise<void> {
  // A message sent instead of a decision withdraws what was waiting for it (the gateway does the same).
  closeApprovals("withdrawn", "Withdrawn by your new message: nothing was done.");
  await turn({ sessionId: chatSessionId, message: text }, text);
}

async function turn(request: MessageInitShape<typeof ChatRequestSchema>, text = "", attempt = 0): Promise<void> {
  const controller = new AbortController();
  setStreaming(controller);
  hideError();
  let reply: HTMLLIElement | null = null;
  const tools = new Map<string, HTMLLIElement>();
  let received = false;
  let asked: HTMLLIElement | null = null;
  try {
    const stream = gateway.chat.chat({ ...request, sessionId: chatSessionId }, { signal: controller.signal });
    for await (const response of stream) {
      received = true;
      const kind = response.event?.kind;
      if (!kind) continue;
      switch (kind.case) {
        case "sessionStarted":
          chatSessionId = kind.value.sessionId;
          saveChatSessionId(chatSessionId);
          break;
        case "textDelta":
          reply ??= add({ role: "assistant", text: "", state: "streaming" });
          reply.textContent += kind.value.text;
          reply.scrollIntoView({ block: "end" });
          break;
        case "toolCallStarted":
          // Text after a tool belongs in a new bubble, below the tool's line.
          reply?.classList.remove("streaming");
          reply = null;
          tools.set(kind.value.callId, add({ role: "tool", text: `${toolLabel(kind.value.name)}…`, state: "running" }));
          break;
        case "toolCallFinished": {
          const state = kind.value.ok ? "ok" : "failed";
          const label = toolLabel(kind.value.name);
          const text = kind.value.summary ? `${label}: ${kind.value.summary}` : label;
          const line = tools.get(kind.value.callId) ?? add({ role: "tool", text, state });
          line.textContent = text;
          line.className = `tool ${state}`;
          line.dataset.state = state;
          break;
        }
        case "tokenDelivery":
          gateway.signedIn(kind.value);
          break;
        case "approvalRequested":
          reply?.classList.remove("streaming");
          reply = null;
          asked = approvalCard(kind.value);
          break;
        case "turnComplete":
          if (![StopReason.END_TURN, StopReason.AWAITING_APPROVAL].includes(kind.value.stopReason)) {
            add({ role: "notice", text: "The assistant stopped before finishing. You can ask again." });
          }
          break;
      }
    }
  } catch (error) {
    const explained = explain(error);
    if (controller.signal.aborted) {
      add({ role: "notice", text: "Stopped." });
    } else if (!received && attempt === 0 && explained.reason === "TOKEN_EXPIRED" && (await gateway.refresh())) {
      reply?.remove();
      return await turn(request, text, attempt + 1);
    } else if (
      !received &&
      attempt === 0 &&
      text &&
      ["SESSION_NOT_FOUND", "SESSION_NOT_OWNED"].includes(explained.reason)
    ) {
      chatSessionId = "";
      saveChatSessionId("");
      add({ role: "notice", text: explained.text });
      return await turn(request, text, attempt + 1);
    } else {
      if (explained.signedOut) gateway.dropSession();
      // A refused decision (expired, already used) cannot be retried: only a message can.
      showError(explained, text ? () => void turn(request, text) : null);
    }
  } finally {
    reply?.classList.remove("streaming");
    if (streaming === controller) setStreaming(null);
    // Counts finished turns (tests and assistive tools can wait on it).
    ui.form.dataset.turns = String(Number(ui.form.dataset.turns ?? "0") + 1);
    saveTranscript();
    // The question is what the person answers next: keyboard focus goes to it.
    if (asked?.dataset.state === "open") asked.querySelector<HTMLButtonElement>("[data-testid=approve-button]")?.focus();
  }
}

ui.form.addEventListener("submit", (event) => {
  event.preventDefault();
  if (streaming) {
    streaming.abort();
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
    streaming.abort();
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

async function showReservations(): Promise<void> {
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
    if (explained.signedOut) gateway.dropSession();
    showError(explained, () => void showReservations());
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

const transcript = loadTranscript();
for (const entry of transcript) add(entry);
if (transcript.length === 0) greet();
ui.input.focus();
