// Test harness for `agent-server acp`: the real binary on real pipes, driven by the official ACP
// TypeScript SDK (its client side over ndJsonStream), against a mock Responses API and OAuth
// issuer served by this process on loopback.

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable, Writable } from "node:stream";
import { fileURLToPath } from "node:url";

import * as acp from "@agentclientprotocol/sdk";

const here = path.dirname(fileURLToPath(import.meta.url));

/** The server binary: $AGENT_SERVER_BIN, else the workspace's debug build. */
export const BIN = process.env.AGENT_SERVER_BIN ?? path.resolve(here, "../../target/debug/agent-server");

/** Bound on every wait, so a broken server fails the test instead of hanging it. */
export const TIMEOUT_MS = 10_000;

/** Rejects after `ms` with `what` in the message, unless `promise` settles first. */
export function within(promise, ms, what) {
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

// ---- SSE events of the Responses API -----------------------------------------------------

export const ev = {
  created: (id) => ({ type: "response.created", response: { id, object: "response", status: "in_progress", output: [] } }),
  messageAdded: (itemId) => ({
    type: "response.output_item.added",
    output_index: 0,
    item: { id: itemId, type: "message", status: "in_progress", role: "assistant", content: [] },
  }),
  textDelta: (itemId, delta) => ({
    type: "response.output_text.delta",
    item_id: itemId,
    output_index: 0,
    content_index: 0,
    delta,
    logprobs: [],
  }),
  messageDone: (itemId, text) => ({
    type: "response.output_item.done",
    output_index: 0,
    item: {
      id: itemId,
      type: "message",
      status: "completed",
      role: "assistant",
      content: [{ type: "output_text", annotations: [], logprobs: [], text }],
    },
  }),
  functionCall: (callId, name, args) => ({
    type: "response.output_item.done",
    output_index: 0,
    item: { id: `fc_${callId}`, type: "function_call", status: "completed", call_id: callId, name, arguments: JSON.stringify(args) },
  }),
  completed: (id, usage = { input_tokens: 10, input_tokens_details: { cached_tokens: 0 }, output_tokens: 5, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 15 }) => ({
    type: "response.completed",
    response: { id, object: "response", status: "completed", usage },
  }),
};

/** An SSE body: `event:`/`data:` frames, numbered. */
export function sse(events) {
  return events
    .map((event, n) => `event: ${event.type}\ndata: ${JSON.stringify({ sequence_number: n, ...event })}\n\n`)
    .join("");
}

/** A whole answer: one message streamed in `parts`. */
export function answer(responseId, ...parts) {
  const itemId = `msg_${responseId}`;
  return sse([
    ev.created(responseId),
    ev.messageAdded(itemId),
    ...parts.map((p) => ev.textDelta(itemId, p)),
    ev.messageDone(itemId, parts.join("")),
    ev.completed(responseId),
  ]);
}

/** A response asking for one tool call. */
export function toolCall(responseId, callId, name, args) {
  return sse([ev.created(responseId), ev.functionCall(callId, name, args), ev.completed(responseId)]);
}

// ---- The mock upstream -------------------------------------------------------------------

function base64url(value) {
  return Buffer.from(JSON.stringify(value)).toString("base64url");
}

/** An unsigned JWT carrying `claims` (the server reads claims, it does not verify them). */
export function fakeJwt(claims) {
  return `${base64url({ alg: "none", typ: "JWT" })}.${base64url(claims)}.sig`;
}

/**
 * Starts the mock upstream on loopback: `POST /v1/responses` answers with the next scripted
 * response (a string body, or a function `(req, res)` for slow streams), recording each request
 * body; `/oauth/authorize` approves at once (redirects to the `redirect_uri` with a code and the
 * `state`); `/oauth/token` exchanges any code for a ChatGPT login.
 */
export async function startUpstream() {
  const script = [];
  const requests = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://localhost");
    let body = "";
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => {
      if (req.method === "POST" && url.pathname === "/v1/responses") {
        requests.push(JSON.parse(body));
        const next = script.shift();
        if (next === undefined) {
          res.writeHead(400, { "content-type": "application/json" });
          res.end(JSON.stringify({ error: { message: "the test scripted no more responses", type: "invalid_request_error" } }));
        } else if (typeof next === "function") {
          next(req, res);
        } else {
          res.writeHead(200, { "content-type": "text/event-stream" });
          res.end(next);
        }
      } else if (url.pathname === "/oauth/authorize") {
        const redirect = new URL(url.searchParams.get("redirect_uri"));
        redirect.searchParams.set("code", "test-code");
        redirect.searchParams.set("state", url.searchParams.get("state"));
        res.writeHead(302, { location: redirect.toString() });
        res.end();
      } else if (req.method === "POST" && url.pathname === "/oauth/token") {
        const auth = { chatgpt_account_id: "acct_1", chatgpt_plan_type: "plus" };
        res.writeHead(200, { "content-type": "application/json" });
        res.end(
          JSON.stringify({
            id_token: fakeJwt({ email: "dev@example.com", "https://api.openai.com/auth": auth }),
            access_token: fakeJwt({ exp: Math.floor(Date.now() / 1000) + 3600, "https://api.openai.com/auth": auth }),
            refresh_token: "refresh-1",
          }),
        );
      } else {
        res.writeHead(404);
        res.end();
      }
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    requests,
    /** Queues responses for the next model requests, in order. */
    respond: (...bodies) => script.push(...bodies),
    /** Forgets the recorded requests and the responses no request took. */
    reset: () => {
      requests.length = 0;
      script.length = 0;
    },
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

/** A stream that sends its first events, then holds the response open until the client goes. */
export function slowStream(responseId, firstText) {
  return (req, res) => {
    const itemId = `msg_${responseId}`;
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.write(sse([ev.created(responseId), ev.messageAdded(itemId), ev.textDelta(itemId, firstText)]));
    const keepAlive = setInterval(() => res.write(": still thinking\n\n"), 200);
    res.on("close", () => clearInterval(keepAlive));
  };
}

// ---- The agent process --------------------------------------------------------------------

/**
 * Spawns `agent-server acp` in a temp home with a scrubbed environment pointing at `upstream`.
 * `apiKey: null` leaves OPENAI_API_KEY unset; `config` is written to config.toml. `reuse` (an
 * earlier agent) runs this one on that agent's home and workspace, which it then leaves in
 * place when it stops (the agent that made them removes them).
 */
export function startAgent(upstream, { apiKey = "test-key", config = "", env = {}, reuse } = {}) {
  const home = reuse?.home ?? mkdtempSync(path.join(tmpdir(), "acp-home-"));
  const workspace = reuse?.workspace ?? mkdtempSync(path.join(tmpdir(), "acp-work-"));
  if (!reuse) {
    mkdirSync(home, { recursive: true });
    writeFileSync(path.join(home, "config.toml"), config);
  }
  const childEnv = {
    PATH: process.env.PATH,
    HOME: home,
    OPENAI_BASE_URL: `${upstream.url}/v1`,
    AGENT_SERVER_AUTH_ISSUER: upstream.url,
    AGENT_SERVER_LOGIN_PORT: "0",
    // The browser login's "open a browser" step runs `true` instead of a browser.
    BROWSER: "true",
    RUST_LOG: process.env.RUST_LOG ?? "warn",
    ...env,
  };
  if (apiKey !== null) childEnv.OPENAI_API_KEY = apiKey;
  const child = spawn(BIN, ["--home", home, "acp"], { env: childEnv, stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  const stderrWaiters = [];
  child.stderr.on("data", (chunk) => {
    stderr += chunk;
    for (const waiter of stderrWaiters.splice(0)) waiter();
  });
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  return {
    child,
    home,
    workspace,
    exited,
    stderr: () => stderr,
    /** Resolves with the first match of `pattern` in stderr. */
    async stderrMatch(pattern) {
      for (;;) {
        const match = stderr.match(pattern);
        if (match) return match;
        await new Promise((resolve) => stderrWaiters.push(resolve));
      }
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
      if (!reuse) {
        rmSync(home, { recursive: true, force: true });
        rmSync(workspace, { recursive: true, force: true });
      }
    },
  };
}

/**
 * Connects the SDK's client to the agent and runs `op(ctx, client)`; `client.updates` collects
 * every `session/update`, `client.permissions` every permission request, answered by
 * `onPermission(params)`. Everything the SDK reports through `console.error`/`console.warn`
 * (messages it could not parse or handle) is collected in `client.sdkErrors`.
 */
export async function withClient(agent, { onPermission } = {}, op) {
  const client = { updates: [], permissions: [], sdkErrors: [], updateWaiters: [] };
  const original = { error: console.error, warn: console.warn };
  console.error = (...args) => client.sdkErrors.push(args.map(String).join(" "));
  console.warn = (...args) => client.sdkErrors.push(args.map(String).join(" "));
  const app = acp
    .client({ name: "acp-e2e" })
    .onRequest(acp.methods.client.session.requestPermission, async (ctx) => {
      client.permissions.push(ctx.params);
      if (!onPermission) throw new Error("this test expected no permission request");
      return onPermission(ctx.params, ctx);
    })
    .onNotification(acp.methods.client.session.update, (ctx) => {
      client.updates.push(ctx.params);
      for (const waiter of client.updateWaiters.splice(0)) waiter();
    });
  const stream = acp.ndJsonStream(Writable.toWeb(agent.child.stdin), Readable.toWeb(agent.child.stdout));
  /** Resolves once an update satisfying `predicate` arrived. */
  client.waitForUpdate = async (predicate) => {
    for (;;) {
      const found = client.updates.find(predicate);
      if (found) return found;
      await new Promise((resolve) => client.updateWaiters.push(resolve));
    }
  };
  try {
    return await app.connectWith(stream, (ctx) => op(ctx, client));
  } finally {
    console.error = original.error;
    console.warn = original.warn;
  }
}

/** `initialize` as an editor sends it. */
export function initialize(ctx) {
  return ctx.request(acp.methods.agent.initialize, {
    protocolVersion: acp.PROTOCOL_VERSION,
    clientCapabilities: { fs: { readTextFile: false, writeTextFile: false }, terminal: false },
    clientInfo: { name: "acp-e2e", version: "1.0.0" },
  });
}

/** The text of a Responses `input` as role: text lines, for comparing conversations. */
export function conversation(request) {
  return request.input.map((item) => {
    if (item.type === "message") {
      return `${item.role}: ${item.content.map((c) => c.text ?? c.image_url ?? "").join("")}`;
    }
    if (item.type === "function_call") return `call ${item.name} ${item.arguments}`;
    if (item.type === "function_call_output") return `output ${item.output}`;
    return item.type;
  });
}

export { acp };
