// The gateway's services over its web face, with the bearer attached to every call and refreshed before it
// expires. Connect protocol by default; "?protocol=grpc-web" in the page URL switches to gRPC-Web.

import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { AuthService } from "./gen/booking/v1/auth_pb.js";
import { ChatService } from "./gen/booking/v1/chat_pb.js";
import { ReservationService } from "./gen/booking/v1/reservations_pb.js";
import type { TokenDelivery } from "./gen/booking/v1/auth_pb.js";
import { reasonOf } from "./errors.js";
import {
  accessTokenExpiresAt,
  clearSession,
  loadSession,
  saveSession,
  sessionFromDelivery,
  type StoredSession,
} from "./session.js";

/** Refresh when the access token has less than this left (and a timer fires this long before expiry). */
export const REFRESH_MARGIN_MS = 60_000;

export type SessionListener = (session: StoredSession | null, why: "signed-in" | "refreshed" | "signed-out") => void;

export class Gateway {
  readonly auth: Client<typeof AuthService>;
  readonly chat: Client<typeof ChatService>;
  readonly reservations: Client<typeof ReservationService>;
  readonly protocol: "connect" | "grpc-web";
  private session: StoredSession | null = loadSession();
  private refreshing: Promise<StoredSession | null> | null = null;
  private refreshTimer: number | undefined;
  private readonly listeners: SessionListener[] = [];

  constructor(baseUrl: string, protocol: "connect" | "grpc-web") {
    this.protocol = protocol;
    const bearer: Interceptor = (next) => async (req) => {
      // RefreshSession carries its own credential; everything else gets the current access token.
      if (req.method.name !== "RefreshSession") {
        const token = await this.accessToken();
        if (token) req.header.set("authorization", `Bearer ${token}`);
      }
      return next(req);
    };
    const options = { baseUrl, useBinaryFormat: true, interceptors: [bearer] };
    const transport = protocol === "grpc-web" ? createGrpcWebTransport(options) : createConnectTransport(options);
    this.auth = createClient(AuthService, transport);
    this.chat = createClient(ChatService, transport);
    this.reservations = createClient(ReservationService, transport);
    this.scheduleRefresh();
  }

  get current(): StoredSession | null {
    return this.session;
  }

  onSessionChange(listener: SessionListener): void {
    this.listeners.push(listener);
  }

  /** Store the tokens of a sign-in (a TokenDelivery from the chat stream or from VerifyOtp). */
  signedIn(delivery: TokenDelivery): void {
    this.setSession(sessionFromDelivery(delivery), "signed-in");
  }

  /** Revoke the session at the gateway (every replica refuses its tokens from now on), then forget it. */
  async signOut(): Promise<void> {
    const session = this.session;
    try {
      if (session) await this.auth.signOut({ refreshToken: session.refreshToken });
    } finally {
      // Forget it locally even when the gateway cannot be reached: the person asked to be signed out here.
      this.setSession(null, "signed-out");
    }
  }

  /** The session ended elsewhere (expired beyond refresh, revoked): forget it. */
  dropSession(): void {
    if (this.session) this.setSession(null, "signed-out");
  }

  /** A valid access token, refreshed first if it is about to expire; "" when signed out. */
  async accessToken(): Promise<string> {
    const session = this.session;
    if (!session) return "";
    if (session.expiresAt - Date.now() > REFRESH_MARGIN_MS / 2) return session.accessToken;
    const refreshed = await this.refresh();
    return refreshed?.accessToken ?? "";
  }

  /**
   * After the gateway answered TOKEN_EXPIRED: exchange the refresh token now. "renewed": retry the call once;
   * "unavailable": the gateway or Cognito could not be reached, the session is kept; "refused": the refresh was
   * refused (TOKEN_*), the session is forgotten.
   */
  async renew(): Promise<"renewed" | "unavailable" | "refused"> {
    const stale = this.session?.accessToken;
    const session = await this.refresh();
    if (!session) return "refused";
    return session.accessToken !== stale ? "renewed" : "unavailable";
  }

  /** Exchange the refresh token for new tokens (one exchange at a time); null when refused. */
  refresh(): Promise<StoredSession | null> {
    if (!this.refreshing) {
      this.refreshing = this.doRefresh().finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  private async doRefresh(): Promise<StoredSession | null> {
    const session = this.session;
    if (!session) return null;
    try {
      const answer = await this.auth.refreshSession({ refreshToken: session.refreshToken });
      const renewed: StoredSession = {
        ...session,
        idToken: answer.idToken,
        accessToken: answer.accessToken,
        refreshToken: answer.refreshToken || session.refreshToken,
        expiresAt: accessTokenExpiresAt(answer.accessToken, answer.expiresIn),
      };
      this.setSession(renewed, "refreshed");
      return renewed;
    } catch (error) {
      if (reasonOf(error).startsWith("TOKEN_")) {
        this.setSession(null, "signed-out");
        return null;
      }
      // Unreachable or busy: keep the session, the token may still work for a while.
      return session;
    }
  }

  private setSession(session: StoredSession | null, why: "signed-in" | "refreshed" | "signed-out"): void {
    this.session = session;
    if (session) saveSession(session);
    else clearSession();
    this.scheduleRefresh();
    for (const listener of this.listeners) listener(session, why);
  }

  private scheduleRefresh(): void {
    window.clearTimeout(this.refreshTimer);
    const session = this.session;
    if (!session) return;
    const wait = Math.max(session.expiresAt - Date.now() - REFRESH_MARGIN_MS, 1_000);
    // Browsers cap timers at about 24.8 days; sessions last an hour.
    this.refreshTimer = window.setTimeout(() => void this.refresh(), Math.min(wait, 2 ** 31 - 1));
  }
}

export function protocolFromPage(): "connect" | "grpc-web" {
  return new URLSearchParams(window.location.search).get("protocol") === "grpc-web" ? "grpc-web" : "connect";
}
