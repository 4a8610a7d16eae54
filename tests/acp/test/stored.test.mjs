// End-to-end tests of the stored sessions in `agent-server acp` (contract sections 8 and 13):
// session/load with its history replay, session/resume, session/list over the store, across
// agent processes sharing one home, with the official ACP TypeScript SDK as the client.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import {
  TIMEOUT_MS,
  acp,
  answer,
  conversation,
  initialize,
  slowStream,
  startAgent,
  startUpstream,
  toolCall,
  withClient,
  within,
} from "../harness.mjs";

let upstream;
before(async () => {
  upstream = await startUpstream();
});
after(async () => {
  await upstream.close();
});

/** Commands run without asking, so the first process's turn needs no permission answers. */
const FULL_ACCESS_CONFIG = 'approval_policy = "never"\nsandbox = "dangerFullAccess"\n';

/** Runs `op(first)` with a first agent whose home later agents reuse; stops every agent. */
async function scenario(options, op) {
  upstream.reset();
  const agents = [startAgent(upstream, options)];
  const again = () => {
    const next = startAgent(upstream, { reuse: agents[0] });
    agents.push(next);
    return next;
  };
  try {
    return await within(op(agents[0], again), 6 * TIMEOUT_MS, "the scenario");
  } catch (err) {
    for (const [n, agent] of agents.entries()) err.message += `\n--- agent ${n} stderr ---\n${agent.stderr()}`;
    throw err;
  } finally {
    // The first agent owns the home: it goes last.
    for (const agent of agents.reverse()) await agent.stop();
  }
}

/** Ends an agent as an editor does when it quits: stdin closes, the agent exits 0. */
async function quit(agent) {
  agent.child.stdin.end();
  const exit = await within(agent.exited, TIMEOUT_MS, "the agent to exit");
  assert.deepEqual(exit, { code: 0, signal: null });
}

const newSession = (ctx, cwd) => ctx.request(acp.methods.agent.session.new, { cwd, mcpServers: [] });

/** Asserts that `request` fails with `code` and `data.kind`, and a message matching `pattern`. */
async function rejects(request, code, kind, pattern) {
  await assert.rejects(request, (err) => {
    assert.equal(err.code, code, err.message);
    assert.equal(err.data?.kind, kind, err.message);
    assert.match(err.message, pattern);
    return true;
  });
}

test("session/load in a new process replays the stored turn before answering, and the next prompt carries it", async () => {
  await scenario({ config: FULL_ACCESS_CONFIG }, async (first, again) => {
    const command = ["bash", "-lc", "echo replayed"];
    const plan = { plan: [{ step: "Run the command", status: "completed" }, { step: "Report", status: "in_progress" }] };
    upstream.respond(
      toolCall("resp_0", "call_0", "update_plan", plan),
      toolCall("resp_1", "call_1", "shell", { command }),
      answer("resp_2", "It printed ", "replayed"),
    );
    const sessionId = await withClient(first, {}, async (ctx, client) => {
      await initialize(ctx);
      const { sessionId } = await newSession(ctx, first.workspace);
      const result = await ctx.request(acp.methods.agent.session.prompt, {
        sessionId,
        prompt: [{ type: "text", text: "run the command" }],
      });
      assert.deepEqual(result, { stopReason: "end_turn" });
      assert.deepEqual(client.sdkErrors, []);
      return sessionId;
    });
    await quit(first);

    const second = again();
    upstream.respond(answer("resp_3", "Still here"));
    await withClient(second, {}, async (ctx, client) => {
      await initialize(ctx);
      const server = fileURLToPath(new URL("../../mcp-servers/fault-server.mjs", import.meta.url));
      const loaded = await ctx.request(acp.methods.agent.session.load, {
        sessionId,
        cwd: second.workspace,
        mcpServers: [{ name: "notes", command: process.execPath, args: [server], env: [] }],
      });
      // Everything below arrived before the answer to session/load.
      const replayed = client.updates.slice();
      assert.ok(replayed.every((n) => n.sessionId === sessionId));
      assert.deepEqual(
        replayed.map((n) => n.update),
        [
          { sessionUpdate: "user_message_chunk", content: { type: "text", text: "run the command" } },
          {
            sessionUpdate: "tool_call",
            toolCallId: "call_1",
            title: "echo replayed",
            kind: "execute",
            rawInput: { command, cwd: first.workspace },
          },
          {
            sessionUpdate: "tool_call_update",
            toolCallId: "call_1",
            status: "completed",
            content: [{ type: "content", content: { type: "text", text: "replayed\n" } }],
            rawOutput: replayed[2].update.rawOutput,
          },
          { sessionUpdate: "agent_message_chunk", content: { type: "text", text: "It printed replayed" } },
          // The plan as the model last set it.
          {
            sessionUpdate: "plan",
            entries: [
              { content: "Run the command", priority: "medium", status: "completed" },
              { content: "Report", priority: "medium", status: "in_progress" },
            ],
          },
        ],
      );
      assert.equal(replayed[2].update.rawOutput.exitCode, 0);
      // The stored settings come back as the session's mode and options.
      assert.equal(loaded.modes.currentModeId, "full-access");
      assert.deepEqual(
        loaded.configOptions.map((o) => [o.id, o.currentValue]),
        [
          ["model", "gpt-5-codex"],
          ["reasoning_effort", "medium"],
        ],
      );

      const next = await ctx.request(acp.methods.agent.session.prompt, {
        sessionId,
        prompt: [{ type: "text", text: "and now?" }],
      });
      assert.deepEqual(next, { stopReason: "end_turn" });
      assert.equal(upstream.requests.length, 4);
      assert.deepEqual(conversation(upstream.requests[3]).slice(-7), [
        "user: run the command",
        `call update_plan ${JSON.stringify(plan)}`,
        "output Plan updated",
        `call shell ${JSON.stringify({ command })}`,
        conversation(upstream.requests[2]).at(-1),
        "assistant: It printed replayed",
        "user: and now?",
      ]);
      assert.match(conversation(upstream.requests[3]).at(-3), /^output .*replayed/s);
      // The MCP servers of session/load are the loaded session's.
      assert.ok(
        upstream.requests[3].tools.some((t) => t.name === "mcp__notes__echo"),
        "the model is offered the MCP tool of session/load's mcpServers",
      );
      // The live turn after the replay streams as usual.
      assert.deepEqual(
        client.updates
          .slice(replayed.length)
          .filter((n) => n.update.sessionUpdate === "agent_message_chunk")
          .map((n) => n.update.content.text),
        ["Still here"],
      );
      assert.deepEqual(client.sdkErrors, []);
    });
  });
});

test("session/resume in a new process answers without replaying, and the next prompt carries the earlier turn", async () => {
  await scenario({}, async (first, again) => {
    upstream.respond(answer("resp_1", "First answer"));
    const sessionId = await withClient(first, {}, async (ctx) => {
      await initialize(ctx);
      const { sessionId } = await newSession(ctx, first.workspace);
      await ctx.request(acp.methods.agent.session.setMode, { sessionId, modeId: "read-only" });
      await ctx.request(acp.methods.agent.session.prompt, { sessionId, prompt: [{ type: "text", text: "hello" }] });
      return sessionId;
    });
    await quit(first);

    const second = again();
    upstream.respond(answer("resp_2", "Second answer"));
    await withClient(second, {}, async (ctx, client) => {
      await initialize(ctx);
      const resumed = await ctx.request(acp.methods.agent.session.resume, { sessionId, cwd: second.workspace });
      assert.deepEqual(client.updates, []);
      // The mode chosen before the restart was stored with the prompt that used it.
      assert.equal(resumed.modes.currentModeId, "read-only");
      assert.deepEqual(
        resumed.configOptions.map((o) => o.id),
        ["model", "reasoning_effort"],
      );
      const next = await ctx.request(acp.methods.agent.session.prompt, {
        sessionId,
        prompt: [{ type: "text", text: "again" }],
      });
      assert.deepEqual(next, { stopReason: "end_turn" });
      assert.deepEqual(conversation(upstream.requests[1]).slice(-3), [
        "user: hello",
        "assistant: First answer",
        "user: again",
      ]);
      assert.equal(
        client.updates
          .filter((n) => n.update.sessionUpdate === "agent_message_chunk")
          .map((n) => n.update.content.text)
          .join(""),
        "Second answer",
      );
      assert.deepEqual(client.sdkErrors, []);
    });
  });
});

test("session/list pages through the stored sessions of every process, filtered by cwd", async () => {
  const other = mkdtempSync(path.join(tmpdir(), "acp-other-"));
  try {
    await scenario({}, async (first, again) => {
      const made = await withClient(first, {}, async (ctx) => {
        await initialize(ctx);
        const ids = [];
        for (let n = 0; n < 51; n++) ids.push((await newSession(ctx, first.workspace)).sessionId);
        ids.push((await newSession(ctx, other)).sessionId);
        return ids;
      });
      await quit(first);

      const second = again();
      await withClient(second, {}, async (ctx, client) => {
        await initialize(ctx);
        const page1 = await ctx.request(acp.methods.agent.session.list, {});
        assert.equal(page1.sessions.length, 50);
        assert.equal(typeof page1.nextCursor, "string");
        const page2 = await ctx.request(acp.methods.agent.session.list, { cursor: page1.nextCursor });
        assert.equal(page2.nextCursor, undefined);
        const listed = [...page1.sessions, ...page2.sessions];
        assert.deepEqual(listed.map((s) => s.sessionId).sort(), made.slice().sort());
        for (const session of listed) assert.match(session.updatedAt, /^\d{4}-\d\d-\d\dT/);

        const filtered = await ctx.request(acp.methods.agent.session.list, { cwd: other });
        assert.deepEqual(
          filtered.sessions.map((s) => [s.sessionId, s.cwd]),
          [[made.at(-1), other]],
        );
        assert.equal(filtered.nextCursor, undefined);

        await rejects(ctx.request(acp.methods.agent.session.list, { cursor: "not-a-cursor" }), -32602, "invalidParams", /cursor/);
        assert.deepEqual(client.sdkErrors, []);
      });
    });
  } finally {
    rmSync(other, { recursive: true, force: true });
  }
});

test("load and resume of unknown sessions, and of a session another process has open, are refused clearly", async () => {
  await scenario({}, async (first, again) => {
    await withClient(first, {}, async (ctx) => {
      await initialize(ctx);
      const { sessionId } = await newSession(ctx, first.workspace);
      // Closed here: stored, loaded nowhere.
      const closed = (await newSession(ctx, first.workspace)).sessionId;
      await ctx.request(acp.methods.agent.session.close, { sessionId: closed });

      const second = again();
      await withClient(second, {}, async (ctx2, client2) => {
        await initialize(ctx2);
        const unknown = "00000000-0000-4000-8000-000000000000";
        const load = (id) => ctx2.request(acp.methods.agent.session.load, { sessionId: id, cwd: second.workspace, mcpServers: [] });
        await rejects(load(unknown), -32602, "sessionNotFound", /not found|unknown|no session/i);
        await rejects(load("not-a-session-id"), -32602, "sessionNotFound", /not-a-session-id/);
        await rejects(
          ctx2.request(acp.methods.agent.session.resume, { sessionId: unknown, cwd: second.workspace }),
          -32602,
          "sessionNotFound",
          new RegExp(unknown),
        );
        // The first process has the session open: loading it here is refused with its pid.
        await assert.rejects(load(sessionId), (err) => {
          assert.equal(err.code, -32002);
          assert.equal(err.data.kind, "sessionInUse");
          assert.equal(err.data.pid, first.child.pid);
          return true;
        });
        await rejects(
          ctx2.request(acp.methods.agent.session.load, { sessionId: closed, cwd: path.join(second.workspace, "missing"), mcpServers: [] }),
          -32602,
          "invalidParams",
          /cwd/,
        );
        assert.deepEqual(client2.updates, []);
        assert.deepEqual(client2.sdkErrors, []);
      });
    });
  });
});

test("session/load of a session open in this process replays it when idle and is refused while a prompt runs", async () => {
  await scenario({}, async (agent) => {
    upstream.respond(answer("resp_1", "Short answer"), slowStream("resp_2", "Working"));
    await withClient(agent, {}, async (ctx, client) => {
      await initialize(ctx);
      const { sessionId } = await newSession(ctx, agent.workspace);
      await ctx.request(acp.methods.agent.session.prompt, { sessionId, prompt: [{ type: "text", text: "quick one" }] });
      const before = client.updates.length;
      const load = () => ctx.request(acp.methods.agent.session.load, { sessionId, cwd: agent.workspace, mcpServers: [] });
      const loaded = await load();
      assert.equal(loaded.modes.currentModeId, "auto");
      assert.deepEqual(
        client.updates.slice(before).map((n) => [n.update.sessionUpdate, n.update.content?.text]),
        [
          ["user_message_chunk", "quick one"],
          ["agent_message_chunk", "Short answer"],
        ],
      );

      const running = ctx.request(acp.methods.agent.session.prompt, { sessionId, prompt: [{ type: "text", text: "slow one" }] });
      await within(
        client.waitForUpdate((n) => n.update.content?.text === "Working"),
        TIMEOUT_MS,
        "the slow stream's first chunk",
      );
      await assert.rejects(load(), (err) => {
        assert.equal(err.code, -32002);
        assert.equal(err.data.kind, "sessionInUse");
        assert.match(err.message, /prompt is running/);
        return true;
      });
      await ctx.notify(acp.methods.agent.session.cancel, { sessionId });
      assert.deepEqual(await within(running, TIMEOUT_MS, "the cancelled prompt"), { stopReason: "cancelled" });
      assert.deepEqual(client.sdkErrors, []);
    });
  });
});
