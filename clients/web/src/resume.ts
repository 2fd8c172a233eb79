// The running chat turn, kept in sessionStorage so that a reload, or a network that went away and came back,
// resumes it (ResumeChat after the last sequence shown) instead of losing it: the session id, the turn's resume
// token (the key to it, and to a TokenDelivery it kept) and the last sequence shown. Per tab, gone with the tab.

const TURN_KEY = "booking_turn";

export type KeptTurn = { sessionId: string; resumeToken: string; lastSequence: string };

export function loadTurn(): KeptTurn | null {
  try {
    const parsed = JSON.parse(sessionStorage.getItem(TURN_KEY) ?? "null") as Partial<KeptTurn> | null;
    if (parsed && parsed.sessionId && parsed.resumeToken && parsed.lastSequence) return parsed as KeptTurn;
  } catch {
    // a damaged entry is no turn
  }
  return null;
}

export function saveTurn(turn: KeptTurn): void {
  sessionStorage.setItem(TURN_KEY, JSON.stringify(turn));
}

export function clearTurn(): void {
  sessionStorage.removeItem(TURN_KEY);
}

/** The delays before each resume attempt: 250 ms doubling to 5 s, each from the upper half of its step. */
export function* resumeDelays(attempts = 8): Generator<number> {
  let step = 250;
  for (let i = 0; i < attempts; i++) {
    yield step / 2 + (Math.random() * step) / 2;
    step = Math.min(step * 2, 5000);
  }
}

/** Until the browser says it is online again (at once when it is). */
export function online(): Promise<void> {
  if (navigator.onLine) return Promise.resolve();
  return new Promise((resolve) => window.addEventListener("online", () => resolve(), { once: true }));
}
