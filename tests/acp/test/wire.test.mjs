// The ACP profile's wire behaviour at the byte level (no SDK in between): malformed input is
// answered per JSON-RPC and the agent keeps serving; stdin EOF lets a running turn finish, then
// the process exits 0.

import assert from "node:assert/strict";
import { createInterface } from "node:readline";
import { after, before, test } from "node:test";

import { TIMEOUT_MS, answer, startAgent, startUpstream, within } from "../harness.mjs";

let upstream;
before(async () => {
  upstream = await startUpstream();
});
after(async () => {
  await upstream.close();
});

/** Reads the agent's stdout line by line, each parsed as JSON. */
function lines(agent) {
  const queue = [];
  const waiters = [];
  const all = [];
  createInterface({ input: agent.child.stdout }).on("line", (line) => {
    const message = JSON.parse(line);
    all.push(message);
    const waiter = waiters.shift();
    if (waiter) waiter(message);
    else queue.push(message);
  });
  return {
    all,
    next: () => within(queue.length ? Promise.resolve(queue.shift()) : new Promise((r) => waiters.push(r)), TIMEOUT_MS, "a line"),
  };
}

function send(agent, text) {
  agent.child.stdin.write(`${text}\n`);
}

const INITIALIZE = JSON.stringify({ jsonrpc: "2.0", id: 0, method: "initialize", params: { protocolVersion: 1, clientCapabilities: {} } });

test("malformed lines are answered per JSON-RPC and the agent keeps serving", async () => {
  const agent = startAgent(upstream);
  try {
    const out = lines(agent);
    send(agent, INITIALIZE);
    assert.equal((await out.next()).result.protocolVersion, 1);

    send(agent, "{this is not json");
    assert.deepEqual(await out.next(), {
      jsonrpc: "2.0",
      id: null,
      error: {
        code: -32700,
        message: "the line is not valid JSON (key must be a string at line 1 column 2); send one JSON-RPC message per line",
        data: { kind: "parseError" },
      },
    });

    send(agent, JSON.stringify({ jsonrpc: "2.0", id: 5, params: {} }));
    const invalid = await out.next();
    assert.equal(invalid.id, 5);
    assert.equal(invalid.error.code, -32600);
    assert.equal(invalid.error.data.kind, "invalidRequest");

    send(agent, JSON.stringify({ jsonrpc: "2.0", id: 6, method: "no/such/method", params: {} }));
    const unknown = await out.next();
    assert.equal(unknown.id, 6);
    assert.equal(unknown.error.code, -32601);

    send(agent, JSON.stringify({ jsonrpc: "2.0", id: 7, method: "session/new", params: { cwd: agent.workspace, mcpServers: [] } }));
    const created = await out.next();
    assert.equal(created.id, 7);
    assert.equal(typeof created.result.sessionId, "string");
  } finally {
    await agent.stop();
  }
});

test("stdin EOF lets the running turn finish and answer, then exits 0", async () => {
  upstream.requests.length = 0;
  upstream.respond(answer("resp_1", "Finished", " anyway"));
  const agent = startAgent(upstream);
  try {
    const out = lines(agent);
    send(agent, INITIALIZE);
    await out.next();
    send(agent, JSON.stringify({ jsonrpc: "2.0", id: 1, method: "session/new", params: { cwd: agent.workspace, mcpServers: [] } }));
    const { sessionId } = (await out.next()).result;
    send(
      agent,
      JSON.stringify({ jsonrpc: "2.0", id: 2, method: "session/prompt", params: { sessionId, prompt: [{ type: "text", text: "go" }] } }),
    );
    agent.child.stdin.end();
    const exit = await within(agent.exited, TIMEOUT_MS, "the agent to exit");
    assert.deepEqual(exit, { code: 0, signal: null });
    const reply = out.all.find((m) => m.id === 2);
    assert.deepEqual(reply, { jsonrpc: "2.0", id: 2, result: { stopReason: "end_turn" } });
    const chunks = out.all
      .filter((m) => m.method === "session/update" && m.params.update.sessionUpdate === "agent_message_chunk")
      .map((m) => m.params.update.content.text);
    assert.deepEqual(chunks, ["Finished", " anyway"]);
    // Every update comes before the prompt's answer.
    assert.equal(out.all.at(-1).id, 2);
  } finally {
    await agent.stop();
  }
});
