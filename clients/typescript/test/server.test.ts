/**
 * The client against the real `agent-server` binary: lifecycle, auth, session bookkeeping and
 * error replies (everything that needs no model).
 */

import assert from "node:assert/strict";
import { readFileSync, statSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join, resolve } from "node:path";
import { test } from "node:test";

import {
  AgentServerClient,
  AgentServerError,
  ConnectionClosedError,
  type AuthStatus,
  type InitializeResult,
  type LoginChatGptCompleteNotification,
  type McpServerStatusNotification,
} from "../src/index.js";
import { serverBin, spawnServer, startServer, tempDir, waitFor } from "./harness.js";

const TIMEOUT = { timeout: 30_000 };

const loggedOut: AuthStatus = {
  authMode: null,
  source: null,
  email: null,
  planType: null,
  accountId: null,
  lastRefresh: null,
  requiresOpenaiAuth: true,
  error: null,
};

const apiKeyFromFile: AuthStatus = { ...loggedOut, authMode: "apiKey", source: "authFile" };

test("initialize reports the server, the framing in use, the home and the auth status", TIMEOUT, async () => {
  const { client, home, cleanup } = spawnServer();
  try {
    const result = await client.initialize({ clientInfo: { name: "ts-test", version: "9.9.9" } });
    const version = result.serverInfo.version;
    const expected: InitializeResult = {
      protocolVersion: 1,
      serverInfo: { name: "agent-server", version },
      capabilities: { approvals: false, framing: "content-length" },
      userAgent: `agent-server/${version} (linux; x86_64) ts-test/9.9.9`,
      home,
      auth: loggedOut,
    };
    assert.deepEqual(result, expected);
  } finally {
    await cleanup();
  }
});

test("initialize declares approvals when a handler is set", TIMEOUT, async () => {
  const { client, cleanup } = spawnServer();
  try {
    client.onApprovalRequest(() => ({ decision: "deny" }));
    const result = await client.initialize();
    assert.deepEqual(result.capabilities, { approvals: true, framing: "content-length" });
  } finally {
    await cleanup();
  }
});

test("a second initialize is rejected as alreadyInitialized", TIMEOUT, async () => {
  const { client, cleanup } = await startServer();
  try {
    const error = await client.initialize().catch((e: unknown) => e);
    assert.ok(error instanceof AgentServerError);
    assert.deepEqual([error.code, error.kind], [-32600, "alreadyInitialized"]);
  } finally {
    await cleanup();
  }
});

test("an unsupported protocol version is rejected and may be retried", TIMEOUT, async () => {
  const { client, cleanup } = spawnServer();
  try {
    const error = await client.initialize({ protocolVersion: 99 }).catch((e: unknown) => e);
    assert.ok(error instanceof AgentServerError);
    assert.deepEqual([error.code, error.data], [-32602, { kind: "unsupportedProtocolVersion", supported: [1] }]);
    const result = await client.initialize({ protocolVersion: 1 });
    assert.equal(result.protocolVersion, 1);
  } finally {
    await cleanup();
  }
});

test("initialize after another request is rejected as initializeNotFirst", TIMEOUT, async () => {
  const { client, cleanup } = spawnServer();
  try {
    assert.deepEqual(await client.authStatus(), loggedOut);
    const error = await client.initialize().catch((e: unknown) => e);
    assert.ok(error instanceof AgentServerError);
    assert.deepEqual([error.code, error.kind], [-32600, "initializeNotFirst"]);
  } finally {
    await cleanup();
  }
});

test("an API key in the environment shows in auth/status, with the token on request", TIMEOUT, async () => {
  const { client, cleanup } = await startServer({ OPENAI_API_KEY: "sk-env-test" });
  try {
    const envKey: AuthStatus = { ...loggedOut, authMode: "apiKey", source: "env" };
    assert.deepEqual(await client.authStatus(), envKey);
    assert.deepEqual(await client.authStatus({ includeToken: true }), { ...envKey, authToken: "sk-env-test" });
  } finally {
    await cleanup();
  }
});

test("loginApiKey writes auth.json and announces auth/statusChanged; logout undoes it", TIMEOUT, async () => {
  const { client, home, cleanup } = await startServer();
  try {
    const changes: AuthStatus[] = [];
    const loggedIn = waitFor<AuthStatus>((s) => s.authMode === "apiKey");
    const loggedOutAgain = waitFor<AuthStatus>((s) => s.authMode === null);
    client.onNotification("auth/statusChanged", (status) => {
      changes.push(status);
      loggedIn.push(status);
      loggedOutAgain.push(status);
    });

    assert.deepEqual(await client.loginApiKey({ apiKey: "sk-file-test" }), {});
    assert.deepEqual(await loggedIn.promise, apiKeyFromFile);
    assert.deepEqual(await client.authStatus({ includeToken: true }), { ...apiKeyFromFile, authToken: "sk-file-test" });
    const authFile = join(home, "auth.json");
    assert.equal(statSync(authFile).mode & 0o777, 0o600);
    const stored = JSON.parse(readFileSync(authFile, "utf8")) as Record<string, unknown>;
    assert.deepEqual([stored.auth_mode, stored.OPENAI_API_KEY], ["apikey", "sk-file-test"]);

    assert.deepEqual(await client.logout(), {});
    assert.deepEqual(await loggedOutAgain.promise, loggedOut);
    assert.deepEqual(await client.authStatus(), loggedOut);
    assert.deepEqual(changes, [apiKeyFromFile, loggedOut]);
  } finally {
    await cleanup();
  }
});

test("params of the wrong shape are rejected as invalidParams naming the field", TIMEOUT, async () => {
  const { client, cleanup } = await startServer();
  try {
    // Deliberately wrong: the typed API would not let this through.
    const error = await client.request("auth/loginApiKey", {} as { apiKey: string }).catch((e: unknown) => e);
    assert.ok(error instanceof AgentServerError);
    assert.equal(error.code, -32602);
    assert.equal(error.kind, "invalidParams");
    assert.equal(error.data?.field, "apiKey");
  } finally {
    await cleanup();
  }
});

test("cancelLogin of an unknown login answers notFound", TIMEOUT, async () => {
  const { client, cleanup } = await startServer();
  try {
    assert.deepEqual(await client.cancelLogin({ loginId: "no-such-login" }), { status: "notFound" });
  } finally {
    await cleanup();
  }
});

test("a device-code login shows the URL and code, and an issuer without it is deviceCodeUnavailable", TIMEOUT, async () => {
  // A mock issuer: the first user-code request is refused (device login disabled), the second
  // hands out a code; polls stay pending until the login is cancelled.
  let userCodeRequests = 0;
  const issuer = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      if (req.url === "/api/accounts/deviceauth/usercode" && userCodeRequests++ > 0) {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ device_auth_id: "dev-1", user_code: "ABCD-1234", interval: "1" }));
      } else {
        res.writeHead(req.url === "/api/accounts/deviceauth/token" ? 403 : 404);
        res.end();
      }
    });
  });
  await new Promise<void>((ok) => issuer.listen(0, "127.0.0.1", ok));
  const issuerUrl = `http://127.0.0.1:${(issuer.address() as AddressInfo).port}`;
  const { client, cleanup } = await startServer({ AGENT_SERVER_AUTH_ISSUER: issuerUrl });
  try {
    const refused = await client.loginChatGPT({ flow: "deviceCode" }).catch((e: unknown) => e);
    assert.ok(refused instanceof AgentServerError);
    assert.deepEqual([refused.code, refused.kind], [-32010, "deviceCodeUnavailable"]);

    const done = waitFor<LoginChatGptCompleteNotification>(() => true);
    client.onNotification("auth/loginChatGPTComplete", done.push);
    const started = await client.loginChatGPT({ flow: "deviceCode" });
    assert.ok(!Number.isNaN(Date.parse(started.expiresAt ?? "")), JSON.stringify(started));
    assert.deepEqual(started, {
      loginId: started.loginId,
      verificationUrl: `${issuerUrl}/codex/device`,
      userCode: "ABCD-1234",
      expiresAt: started.expiresAt,
    });
    assert.deepEqual(await client.cancelLogin({ loginId: started.loginId }), { status: "cancelled" });
    assert.deepEqual(await done.promise, {
      loginId: started.loginId,
      success: false,
      error: "the login was cancelled",
    });
  } finally {
    await cleanup();
    issuer.closeAllConnections();
    await new Promise<void>((ok) => issuer.close(() => ok()));
  }
});

test("rateLimits without a ChatGPT login is all null, without asking anyone", TIMEOUT, async () => {
  const { client, cleanup } = await startServer();
  try {
    assert.deepEqual(await client.rateLimits({ refresh: true }), {
      primary: null,
      secondary: null,
      credits: null,
      planType: null,
      error: null,
    });
  } finally {
    await cleanup();
  }
});

test("model/list answers the built-in catalog with the configured default", TIMEOUT, async () => {
  const { client, cleanup } = await startServer({ OPENAI_API_KEY: "test" });
  try {
    const { models } = await client.listModels();
    const codex = models.find((m) => m.id === "gpt-5-codex");
    assert.deepEqual(codex, {
      id: "gpt-5-codex",
      displayName: "gpt-5-codex",
      description: codex?.description,
      provider: "openai",
      contextWindow: 272000,
      defaultReasoningEffort: "medium",
      reasoningEfforts: ["low", "medium", "high"],
      inputModalities: ["text", "image"],
      isDefault: true,
    });
    assert.deepEqual(
      models.filter((m) => m.isDefault).map((m) => m.id),
      ["gpt-5-codex"],
    );
    assert.ok(models.some((m) => m.id === "gpt-5" && !m.isDefault));
    const session = await client.newSession({});
    const error = await client.steer({ sessionId: session.sessionId, text: "more" }).catch((e: unknown) => e);
    assert.ok(error instanceof AgentServerError);
    assert.deepEqual([error.code, error.kind], [-32002, "noRunningTurn"]);
  } finally {
    await cleanup();
  }
});

test("session/list starts empty and unknown sessions are sessionNotFound", TIMEOUT, async () => {
  const { client, cleanup } = await startServer();
  try {
    assert.deepEqual(await client.listSessions(), { sessions: [], nextCursor: null });
    for (const call of [
      () => client.closeSession({ sessionId: "no-such-session" }),
      () => client.interrupt({ sessionId: "no-such-session" }),
    ]) {
      const error = await call().catch((e: unknown) => e);
      assert.ok(error instanceof AgentServerError);
      assert.deepEqual([error.code, error.kind], [-32602, "sessionNotFound"]);
    }
  } finally {
    await cleanup();
  }
});

test("a request cancelled before it is answered still settles exactly once", TIMEOUT, async () => {
  const { client, cleanup } = await startServer();
  try {
    const controller = new AbortController();
    controller.abort();
    // The server may finish first (a normal result) or honour the cancel (-32800).
    const outcome = await client.listSessions({}, { signal: controller.signal }).then(
      (result) => result,
      (error: unknown) => (error instanceof AgentServerError ? [error.code, error.kind] : error),
    );
    assert.ok(
      JSON.stringify(outcome) === JSON.stringify({ sessions: [], nextCursor: null }) ||
        JSON.stringify(outcome) === JSON.stringify([-32800, "cancelled"]),
      `unexpected outcome ${JSON.stringify(outcome)}`,
    );
    // The connection is still usable afterwards.
    assert.deepEqual(await client.listSessions(), { sessions: [], nextCursor: null });
  } finally {
    await cleanup();
  }
});

test("sessions without auth fail with authRequired", TIMEOUT, async () => {
  const { client, cleanup } = await startServer();
  try {
    const error = await client.newSession({}).catch((e: unknown) => e);
    assert.ok(error instanceof AgentServerError);
    assert.deepEqual([error.code, error.kind], [-32000, "authRequired"]);
  } finally {
    await cleanup();
  }
});

test("session/new, session/list and session/close keep the books", TIMEOUT, async () => {
  const cwd = tempDir("cwd");
  const { client, cleanup } = await startServer({ OPENAI_API_KEY: "test" });
  try {
    const session = await client.newSession({ cwd, approvalPolicy: "never", sandbox: "readOnly" });
    assert.deepEqual(session, {
      sessionId: session.sessionId,
      cwd,
      model: "gpt-5-codex",
      modelProvider: "openai",
      approvalPolicy: "never",
      sandbox: "readOnly",
      createdAt: session.createdAt,
      status: "idle",
      title: null,
      updatedAt: session.updatedAt,
      ephemeral: false,
      archived: false,
      loaded: true,
      turnCount: 0,
      instructionSources: [],
    });
    assert.ok(!Number.isNaN(Date.parse(session.createdAt)), `createdAt ${session.createdAt} is RFC 3339`);
    assert.deepEqual(await client.listSessions(), { sessions: [session], nextCursor: null });
    assert.deepEqual(await client.closeSession({ sessionId: session.sessionId }), {});
    assert.deepEqual(await client.listSessions(), { sessions: [], nextCursor: null });
  } finally {
    await cleanup();
  }
});

test("close sends shutdown and the server exits with status 0", TIMEOUT, async () => {
  const { client } = await startServer();
  assert.deepEqual(await client.close(), { code: 0, signal: null });
  assert.equal(client.closed, true);
  const error = await client.listSessions().catch((e: unknown) => e);
  assert.ok(error instanceof ConnectionClosedError);
});

test("a binary that cannot start fails with a message naming AGENT_SERVER_BIN", TIMEOUT, async () => {
  const client = AgentServerClient.spawn({ binaryPath: `${serverBin}-does-not-exist` });
  const error = await client.initialize().catch((e: unknown) => e);
  assert.ok(error instanceof ConnectionClosedError);
  assert.match(error.message, /AGENT_SERVER_BIN/);
  client.dispose();
});

test("a server that stops at start shows its stderr in the error", TIMEOUT, async () => {
  const home = tempDir("badconfig");
  const { writeFileSync } = await import("node:fs");
  writeFileSync(join(home, "config.toml"), "model = [unclosed\n");
  const client = AgentServerClient.spawn({ binaryPath: serverBin, args: ["--home", home] });
  const error = await client.initialize().catch((e: unknown) => e);
  assert.ok(error instanceof ConnectionClosedError);
  assert.equal(error.exitCode, 2);
  assert.match(error.stderr, /config\.toml/);
  client.dispose();
});

test("mcpList shows a session's own MCP server and its tools once mcp/serverStatus says ready", TIMEOUT, async () => {
  const faultServer = resolve("../../tests/mcp-servers/fault-server.mjs");
  const { client, cleanup } = await startServer({ OPENAI_API_KEY: "test" });
  try {
    const ready = waitFor<McpServerStatusNotification>((n) => n.status === "ready");
    client.onNotification("mcp/serverStatus", ready.push);
    const session = await client.newSession({
      mcpServers: [{ name: "fault", command: "node", args: [faultServer] }],
    });
    const status = await ready.promise;
    assert.deepEqual(status, { name: "fault", sessionId: session.sessionId, status: "ready", toolCount: 7 });
    const listed = await client.mcpList({ sessionId: session.sessionId });
    assert.deepEqual(
      listed.servers.map((s) => [s.name, s.transport, s.status, s.error]),
      [["fault", "stdio", "ready", null]],
    );
    const echo = listed.servers[0]?.tools.find((t) => t.name === "echo");
    assert.equal(echo?.description, "Echoes the message back");
    assert.deepEqual(await client.mcpList(), { servers: [] });
  } finally {
    await cleanup();
  }
});

test("resumeSession and forkSession start the mcpServers they are given for that session", TIMEOUT, async () => {
  const faultServer = resolve("../../tests/mcp-servers/fault-server.mjs");
  const { client, cleanup } = await startServer({ OPENAI_API_KEY: "test" });
  try {
    // Listening before the request: the server starts in the background as the reply is sent.
    const ready = (name: string) => {
      const wait = waitFor<McpServerStatusNotification>((n) => n.name === name && n.status === "ready");
      client.onNotification("mcp/serverStatus", wait.push);
      return wait;
    };
    const { sessionId } = await client.newSession({});
    await client.closeSession({ sessionId });

    const resumedReady = ready("resumed");
    const resumed = await client.resumeSession({
      sessionId,
      mcpServers: [{ name: "resumed", command: "node", args: [faultServer] }],
    });
    assert.equal(resumed.session.sessionId, sessionId);
    assert.deepEqual(await resumedReady.promise, { name: "resumed", sessionId, status: "ready", toolCount: 7 });

    const forkReady = ready("forked");
    const fork = await client.forkSession({
      sessionId,
      mcpServers: [{ name: "forked", command: "node", args: [faultServer] }],
    });
    const forkId = fork.session.sessionId;
    assert.notEqual(forkId, sessionId);
    assert.deepEqual(await forkReady.promise, { name: "forked", sessionId: forkId, status: "ready", toolCount: 7 });

    const listed = async (id: string) =>
      (await client.mcpList({ sessionId: id })).servers.map((s) => [s.name, s.status]);
    assert.deepEqual(await listed(sessionId), [["resumed", "ready"]]);
    assert.deepEqual(await listed(forkId), [["forked", "ready"]]);
  } finally {
    await cleanup();
  }
});
