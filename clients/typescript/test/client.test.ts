/**
 * The client's own mechanics, against a scripted peer over in-memory streams: event ordering in
 * `submitAndWait`, cancellation, approvals, errors, and the end of the connection.
 */

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { PassThrough } from "node:stream";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import {
  CancellationTokenSource,
  createMessageConnection,
  ResponseError,
  StreamMessageReader,
  StreamMessageWriter,
  type CancellationToken,
  type MessageConnection,
} from "vscode-jsonrpc/node";

import {
  AgentServerClient,
  AgentServerError,
  CLIENT_REQUEST_METHODS,
  ConnectionClosedError,
  type ClientRequestMethod,
  type Event,
  type RequestApprovalParams,
  type SessionEventNotification,
} from "../src/index.js";

const usage = { inputTokens: 1, cachedInputTokens: 0, outputTokens: 2, reasoningOutputTokens: 0, totalTokens: 3 };

/** A client wired to a peer that plays the server. */
function pair(): { client: AgentServerClient; peer: MessageConnection; toClient: PassThrough } {
  const toServer = new PassThrough();
  const toClient = new PassThrough();
  const client = new AgentServerClient(toClient, toServer);
  const peer = createMessageConnection(new StreamMessageReader(toServer), new StreamMessageWriter(toClient));
  return { client, peer, toClient };
}

const started: Event = {
  type: "turnStarted",
  model: "m",
  reasoningEffort: "medium",
  approvalPolicy: "never",
  sandbox: "readOnly",
  cwd: "/w",
};

function event(sessionId: string, turnId: string, seq: number, ev: Event): SessionEventNotification {
  return { sessionId, turnId, seq, event: ev };
}

test("submitAndWait sees events that arrive before the submit reply and ignores other turns", async () => {
  const { client, peer } = pair();
  peer.onRequest("session/submit", async () => {
    // Another session's turn, then this turn's whole life, all before the reply.
    await peer.sendNotification("session/event", event("s-other", "t-9", 1, started));
    await peer.sendNotification("session/event", event("s-1", "t-1", 1, started));
    await peer.sendNotification(
      "session/event",
      event("s-1", "t-1", 2, { type: "agentMessageDelta", itemId: "i", delta: "hi" }),
    );
    await peer.sendNotification(
      "session/event",
      event("s-1", "t-1", 3, { type: "turnCompleted", status: "completed", lastAgentMessage: "hi", usage }),
    );
    return { sessionId: "s-1", turnId: "t-1" };
  });
  peer.listen();
  const seen: number[] = [];
  const submitted: unknown[] = [];
  const done = await client.submitAndWait(
    { text: "hello" },
    { onEvent: (n) => seen.push(n.seq), onSubmitted: (r) => submitted.push(r) },
  );
  assert.deepEqual(done, { type: "turnCompleted", status: "completed", lastAgentMessage: "hi", usage });
  assert.deepEqual(seen, [1, 2, 3]);
  assert.deepEqual(submitted, [{ sessionId: "s-1", turnId: "t-1" }]);
  client.dispose();
  peer.dispose();
});

test("an error reply becomes an AgentServerError with code, kind and method", async () => {
  const { client, peer } = pair();
  peer.onRequest("session/close", () => {
    throw new ResponseError(-32602, "no session nope; call session/list", { kind: "sessionNotFound" });
  });
  peer.listen();
  const error = await client.closeSession({ sessionId: "nope" }).catch((e: unknown) => e);
  assert.ok(error instanceof AgentServerError);
  assert.deepEqual(
    { code: error.code, kind: error.kind, method: error.method, message: error.message, data: error.data },
    {
      code: -32602,
      kind: "sessionNotFound",
      method: "session/close",
      message: "no session nope; call session/list",
      data: { kind: "sessionNotFound" },
    },
  );
  client.dispose();
  peer.dispose();
});

test("aborting a request sends $/cancelRequest and settles with the server's reply", async () => {
  const { client, peer } = pair();
  const received = new Promise<void>((ok) => {
    peer.onRequest("session/list", (_params: unknown, token: CancellationToken) => {
      ok();
      return new Promise((_resolve, reject) => {
        token.onCancellationRequested(() => reject(new ResponseError(-32800, "request cancelled", { kind: "cancelled" })));
      });
    });
  });
  peer.listen();
  const controller = new AbortController();
  const pending = client.listSessions({}, { signal: controller.signal }).catch((e: unknown) => e);
  await received;
  controller.abort();
  const error = await pending;
  assert.ok(error instanceof AgentServerError);
  assert.deepEqual([error.code, error.kind], [-32800, "cancelled"]);
  client.dispose();
  peer.dispose();
});

test("initialize declares approvals when a handler is set, and the handler answers", async () => {
  const { client, peer } = pair();
  let initParams: unknown;
  peer.onRequest("initialize", (params: unknown) => {
    initParams = params;
    return { protocolVersion: 1 };
  });
  peer.listen();
  const asked: RequestApprovalParams[] = [];
  client.onApprovalRequest((params) => {
    asked.push(params);
    return { decision: "approveForSession" };
  });
  await client.initialize({ clientInfo: { name: "t" } });
  assert.deepEqual(initParams, { protocolVersion: 1, clientInfo: { name: "t" }, capabilities: { approvals: true } });

  const params: RequestApprovalParams = {
    sessionId: "s",
    turnId: "t",
    itemId: "call_1",
    kind: "commandExecution",
    command: ["touch", "x"],
    cwd: "/w",
  };
  const answer = await peer.sendRequest("session/requestApproval", params);
  assert.deepEqual(answer, { decision: "approveForSession" });
  assert.deepEqual(asked, [params]);
  client.dispose();
  peer.dispose();
});

test("without a handler, or when it throws, an approval request is denied", async () => {
  const { client, peer } = pair();
  peer.listen();
  const params: RequestApprovalParams = { sessionId: "s", turnId: "t", itemId: "i", kind: "fileChange", changes: [] };
  assert.deepEqual(await peer.sendRequest("session/requestApproval", params), { decision: "deny" });
  client.onApprovalRequest(() => {
    throw new Error("handler bug");
  });
  assert.deepEqual(await peer.sendRequest("session/requestApproval", params), { decision: "deny" });
  client.dispose();
  peer.dispose();
});

test("the server withdrawing an approval request aborts the handler's signal", async () => {
  const { client, peer } = pair();
  peer.listen();
  let started: () => void = () => undefined;
  const handlerStarted = new Promise<void>((ok) => (started = ok));
  client.onApprovalRequest(
    (_params, { signal }) =>
      new Promise((resolve) => {
        started();
        signal.addEventListener("abort", () => resolve({ decision: "abort" }));
      }),
  );
  const source = new CancellationTokenSource();
  const params: RequestApprovalParams = { sessionId: "s", turnId: "t", itemId: "i", kind: "commandExecution" };
  const answer = peer.sendRequest("session/requestApproval", params, source.token);
  await handlerStarted;
  source.cancel();
  assert.deepEqual(await answer, { decision: "abort" });
  client.dispose();
  peer.dispose();
});

test("typed notification listeners get their params; events(sessionId) filters by session", async () => {
  const { client, peer } = pair();
  peer.listen();
  const statuses: unknown[] = [];
  client.onNotification("auth/statusChanged", (status) => statuses.push(status.authMode));
  const all: string[] = [];
  client.onNotification((method) => all.push(method));
  const iterator = client.events("s-1");
  await peer.sendNotification("auth/statusChanged", { authMode: "apiKey", requiresOpenaiAuth: true });
  await peer.sendNotification("session/event", event("s-2", "t", 1, started));
  await peer.sendNotification("session/event", event("s-1", "t", 1, started));
  const first = await iterator.next();
  assert.deepEqual(first, { done: false, value: event("s-1", "t", 1, started) });
  assert.deepEqual(statuses, ["apiKey"]);
  assert.deepEqual(all, ["auth/statusChanged", "session/event", "session/event"]);
  await iterator.return?.();
  client.dispose();
  peer.dispose();
});

test("the end of the connection rejects pending requests and ends event iterators", async () => {
  const { client, peer, toClient } = pair();
  const gotRequest = new Promise<void>((ok) => peer.onRequest("session/list", () => (ok(), new Promise(() => undefined))));
  peer.listen();
  const iterator = client.events("s-1");
  const pending = client.listSessions().catch((e: unknown) => e);
  const closed = new Promise<ConnectionClosedError>((ok) => client.onClose(ok));
  await gotRequest;
  toClient.end();
  const error = await pending;
  assert.ok(error instanceof ConnectionClosedError);
  assert.equal(await closed, error);
  assert.deepEqual(await iterator.next(), { done: true, value: undefined });
  assert.equal(client.closed, true);
  const late = await client.authStatus().catch((e: unknown) => e);
  assert.equal(late, error);
  // Subscribing after the end is harmless: the iterator is already done, submitAndWait rejects.
  assert.deepEqual(await client.events("s-1").next(), { done: true, value: undefined });
  assert.equal(await client.submitAndWait({ text: "x" }).catch((e: unknown) => e), error);
  peer.dispose();
});

test("aborting submitAndWait after the turn started interrupts that turn and rejects", async () => {
  const { client, peer } = pair();
  const interrupted: unknown[] = [];
  peer.onRequest("session/submit", () => ({ sessionId: "s-1", turnId: "t-1" }));
  const gotInterrupt = new Promise<void>((ok) =>
    peer.onRequest("session/interrupt", (params: unknown) => {
      interrupted.push(params);
      ok();
      return {};
    }),
  );
  peer.listen();
  const controller = new AbortController();
  const waiting = client
    .submitAndWait({ text: "x" }, { signal: controller.signal, onSubmitted: () => controller.abort(new Error("stop")) })
    .catch((e: unknown) => e);
  const error = await waiting;
  await gotInterrupt;
  assert.deepEqual((error as Error).message, "stop");
  assert.deepEqual(interrupted, [{ sessionId: "s-1", turnId: "t-1" }]);
  client.dispose();
  peer.dispose();
});

test("every client → server request of the schema has a typed wrapper", async () => {
  const { client, peer } = pair();
  const seen: string[] = [];
  peer.onRequest((method: string) => {
    seen.push(method);
    return method === "shutdown" ? null : {};
  });
  peer.listen();
  const wrappers: Record<ClientRequestMethod, () => Promise<unknown>> = {
    initialize: () => client.initialize(),
    shutdown: () => client.shutdown(),
    "auth/status": () => client.authStatus(),
    "auth/loginApiKey": () => client.loginApiKey({ apiKey: "sk-x" }),
    "auth/loginChatGPT": () => client.loginChatGPT(),
    "auth/cancelLogin": () => client.cancelLogin({ loginId: "l" }),
    "auth/rateLimits": () => client.rateLimits({ refresh: true }),
    "auth/logout": () => client.logout(),
    "session/new": () => client.newSession(),
    "session/submit": () => client.submit({ text: "x" }),
    "session/interrupt": () => client.interrupt({ sessionId: "s" }),
    "session/list": () => client.listSessions(),
    "session/close": () => client.closeSession({ sessionId: "s" }),
    "session/read": () => client.readSession({ sessionId: "s" }),
    "session/resume": () => client.resumeSession({ sessionId: "s" }),
    "session/fork": () => client.forkSession({ sessionId: "s" }),
    "session/archive": () => client.archiveSession({ sessionId: "s" }),
    "session/unarchive": () => client.unarchiveSession({ sessionId: "s" }),
    "session/delete": () => client.deleteSession({ sessionId: "s" }),
    "session/setTitle": () => client.setSessionTitle({ sessionId: "s", title: "t" }),
    "mcp/list": () => client.mcpList(),
    "model/list": () => client.listModels(),
    "session/steer": () => client.steer({ sessionId: "s", text: "x" }),
    "session/compact": () => client.compact({ sessionId: "s" }),
  };
  for (const method of CLIENT_REQUEST_METHODS) await wrappers[method]();
  assert.deepEqual(seen, [...CLIENT_REQUEST_METHODS]);
  client.dispose();
  peer.dispose();
});

test("the generated types match the schema", () => {
  const script = fileURLToPath(new URL("../../scripts/generate.mjs", import.meta.url));
  const result = spawnSync(process.execPath, [script, "--check"], { encoding: "utf8" });
  assert.deepEqual([result.status, result.stderr], [0, ""]);
});
