/**
 * Typed errors. Every error the SDK rejects a promise with is a {@link MurmurError}:
 * `code` is the broker's code when the broker gave one (Helios `error.code`, a TimeStick
 * `error_code`, an API error code), or one of the SDK's own {@link ClientErrorCode}s;
 * `reason` is the broker's message, unchanged.
 *
 * @module
 */

/** Codes of errors the SDK raises itself (not sent by the broker). */
export const ClientErrorCode = {
  /** No answer within the request's timeout (client side). Helios uses the broker's `REQUEST_TIMEOUT`. */
  TIMEOUT: "TIMEOUT",
  /** The connection went away while the request was in flight and its answer cannot come. */
  CONNECTION_LOST: "CONNECTION_LOST",
  /** The client was closed (by the app, or for good by the broker: 4002 replaced, auth refused). */
  CLOSED: "CLOSED",
  /** The bounded queue of requests waiting for a connection is full. */
  QUEUE_FULL: "QUEUE_FULL",
  /** The caller's `AbortSignal` fired before the request was sent, or while the cancel could not reach the broker. */
  ABORTED: "ABORTED",
  /** A Helios recovery failed: requests made by the old Starling will never be answered. */
  RECOVERY_FAILED: "RECOVERY_FAILED",
  /** Chat `authenticate` was refused. */
  AUTH_FAILED: "AUTH_FAILED",
  /** A chat action was answered `status-response` `failed`; `reason` is the broker's message. */
  FAILED: "FAILED",
  /** The broker sent something the SDK cannot use. */
  PROTOCOL: "PROTOCOL",
  /** Bad arguments given to the SDK. */
  INVALID_ARGUMENT: "INVALID_ARGUMENT",
  /** An HTTP request failed at the network level (TimeStick). */
  NETWORK: "NETWORK",
} as const;

export type ClientErrorCode = (typeof ClientErrorCode)[keyof typeof ClientErrorCode];

/** Helios-Starling error codes the broker sends (docs/errors.md); providers may use any other string. */
export type HeliosErrorCode =
  | "INVALID_MESSAGE_FORMAT"
  | "METHOD_NOT_FOUND"
  | "REQUEST_TIMEOUT"
  | "REQUEST_CANCELLED"
  | "VALIDATION_ERROR"
  | "INTERNAL_ERROR"
  | "TOO_MANY_REQUESTS"
  | "EXPIRED"
  | "METHOD_ERROR"
  | "PROTOCOL_VIOLATION";

/** The base class of every SDK error. */
export class MurmurError extends Error {
  /** The broker's code, or a {@link ClientErrorCode}. */
  readonly code: string;
  /** Extra data: Helios `error.details`, a TimeStick error body, … */
  readonly details: unknown;

  constructor(code: string, reason: string, details?: unknown) {
    super(reason);
    this.name = "MurmurError";
    this.code = code;
    this.details = details;
  }

  /** The broker's human-readable reason (the same as `message`). */
  get reason(): string {
    return this.message;
  }
}

/** An error response of a Helios-Starling request, or one the SDK raises for one. */
export class HeliosError extends MurmurError {
  constructor(code: HeliosErrorCode | ClientErrorCode | (string & {}), reason: string, details?: unknown) {
    super(code, reason, details);
    this.name = "HeliosError";
  }
}

/** A chat action that failed: `code` is `FAILED` (the broker's `status-response`) or a client code. */
export class ChatError extends MurmurError {
  constructor(code: string, reason: string, details?: unknown) {
    super(code, reason, details);
    this.name = "ChatError";
  }
}

/** A TimeStick HTTP refusal: `status` is the HTTP status, `code` its `error_code` (or START-ERROR). */
export class TimeStickError extends MurmurError {
  readonly status: number;
  constructor(status: number, code: string, reason: string, details?: unknown) {
    super(code, reason, details);
    this.name = "TimeStickError";
    this.status = status;
  }
}

/** The connection closed for good; `closeCode`/`closeReason` are the WebSocket close frame's. */
export class ConnectionClosedError extends MurmurError {
  readonly closeCode: number;
  readonly closeReason: string;
  constructor(closeCode: number, closeReason: string) {
    super(ClientErrorCode.CLOSED, closeReason || `connection closed (${closeCode})`);
    this.name = "ConnectionClosedError";
    this.closeCode = closeCode;
    this.closeReason = closeReason;
  }
}
