/**
 * Errors the client raises: the server's JSON-RPC errors, and the connection ending.
 */

import type { ErrorData, ErrorKind } from "./generated/protocol.js";

/** JSON-RPC error codes the server uses (see the contract's error table). */
export const ErrorCode = {
  ParseError: -32700,
  InvalidRequest: -32600,
  MethodNotFound: -32601,
  InvalidParams: -32602,
  InternalError: -32603,
  RequestCancelled: -32800,
  AuthRequired: -32000,
  Overloaded: -32001,
  LoginFailedToStart: -32010,
} as const;

/** An error reply from the server to one of the client's requests. */
export class AgentServerError extends Error {
  /** The JSON-RPC error code, e.g. `-32602`. */
  readonly code: number;
  /** The machine-readable details; `data.kind` is normative. */
  readonly data: ErrorData | undefined;
  /** The method of the request that failed. */
  readonly method: string;

  constructor(method: string, code: number, message: string, data?: ErrorData) {
    super(message);
    this.name = "AgentServerError";
    this.method = method;
    this.code = code;
    this.data = data;
  }

  /** `data.kind`, e.g. `"sessionNotFound"`, when the server sent one. */
  get kind(): ErrorKind | undefined {
    return this.data?.kind;
  }
}

/** The connection ended (the server exited or its stdout closed) before a reply arrived. */
export class ConnectionClosedError extends Error {
  /** The server's exit code, when it has exited. */
  readonly exitCode: number | null;
  /** The signal that ended the server, when one did. */
  readonly signal: NodeJS.Signals | null;
  /** The last lines the server wrote to stderr (only when stderr is piped). */
  readonly stderr: string;

  constructor(message: string, exitCode: number | null, signal: NodeJS.Signals | null, stderr: string) {
    super(stderr.trim() === "" ? message : `${message}; server stderr:\n${stderr.trimEnd()}`);
    this.name = "ConnectionClosedError";
    this.exitCode = exitCode;
    this.signal = signal;
    this.stderr = stderr;
  }
}
