// End-to-end tests of `agent-server acp` (contract section 13) with the official ACP TypeScript
// SDK as the client, against a mock upstream on loopback.

import assert from "node:assert/strict";
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

/** Runs `op` with a fresh agent and upstream script, then stops the agent. */
async function scenario(options, op) {
  upstream.requests.length = 0;
  const agent = startAgent(upstream, options);
  try {
    return await within(op(agent), 4 * TIMEOUT_MS, "the scenario");
  } catch (err) {
    err.message += `\n--- agent stderr ---\n${agent.stderr()}`;
    throw err;
  } finally {
    await agent.stop();
  }
}

function texts(updates, kind) {
  return updates
    .filter((n) => n.update.sessionUpdate === kind)
    .map((n) => n.update.content.text)
    .join("");
}

test("initialize reports the capabilities and both auth methods", async () => {
  await scenario({}, async (agent) => {
    await withClient(agent, {}, async (ctx, client) => {
      const result = await initialize(ctx);
      assert.deepEqual(result, {
        protocolVersion: 1,
        agentCapabilities: {
          loadSession: true,
          promptCapabilities: { image: true, audio: false, embeddedContext: true },
          mcpCapabilities: { http: true, sse: false },
          sessionCapabilities: { list: {}, resume: {}, close: {} },
          auth: {},
        },
        authMethods: [
          {
            id: "chatgpt",
            name: "Log in with ChatGPT",
            description: "Opens a browser to sign in with your ChatGPT account (Plus, Pro, Team, Enterprise)",
          },
          {
            id: "openai-api-key",
            name: "Use OPENAI_API_KEY",
            description: "Uses the OPENAI_API_KEY environment variable of the agent process",
          },
        ],
        agentInfo: { name: "agent-server", version: result.agentInfo.version },
      });
      assert.match(result.agentInfo.version, /^\d+\.\d+\.\d+/);
      assert.deepEqual(client.sdkErrors, []);
    });
  });
});

test("two prompts in one session: streamed chunks, end_turn, and the second request carries the first turn", async () => {
  await scenario({}, async (agent) => {
    upstream.respond(answer("resp_1", "Hello", " there"), answer("resp_2", "Again"));
    await withClient(agent, {}, async (ctx, client) => {
      await initialize(ctx);
      const session = await ctx.request(acp.methods.agent.session.new, { cwd: agent.workspace, mcpServers: [] });
      assert.equal(typeof session.sessionId, "string");
      assert.equal(session.modes.currentModeId, "auto");
      assert.deepEqual(
        session.configOptions.map((o) => [o.id, o.category, o.currentValue]),
        [
          ["model", "model", "gpt-5-codex"],
          ["reasoning_effort", "thought_level", "medium"],
        ],
      );
      // The model choices are the model catalog's.
      const models = session.configOptions[0].options.map((o) => o.value);
      assert.ok(models.includes("gpt-5-codex") && models.includes("gpt-5"), `models offered: ${models}`);

      const first = await ctx.request(acp.methods.agent.session.prompt, {
        sessionId: session.sessionId,
        prompt: [{ type: "text", text: "first question" }],
      });
      assert.deepEqual(first, { stopReason: "end_turn" });
      assert.equal(texts(client.updates, "agent_message_chunk"), "Hello there");
      assert.ok(client.updates.every((n) => n.sessionId === session.sessionId));
      // tokenUsage → usage_update: the call's total tokens against the model's context window.
      const usage = client.updates.map((n) => n.update).find((u) => u.sessionUpdate === "usage_update");
      assert.equal(usage.used, 15);
      assert.ok(usage.size > 100_000, `context window ${usage.size}`);

      const second = await ctx.request(acp.methods.agent.session.prompt, {
        sessionId: session.sessionId,
        prompt: [{ type: "text", text: "second question" }],
      });
      assert.deepEqual(second, { stopReason: "end_turn" });
      assert.equal(texts(client.updates, "agent_message_chunk"), "Hello thereAgain");
      assert.equal(upstream.requests.length, 2);
      assert.deepEqual(conversation(upstream.requests[1]).slice(-3), [
        "user: first question",
        "assistant: Hello there",
        "user: second question",
      ]);
      assert.deepEqual(client.sdkErrors, []);
    });
  });
});

test("every prompt block kind reaches the model: text, resource_link, image, embedded resource", async () => {
  await scenario({}, async (agent) => {
    upstream.respond(answer("resp_1", "Seen"));
    await withClient(agent, {}, async (ctx) => {
      await initialize(ctx);
      const { sessionId } = await ctx.request(acp.methods.agent.session.new, { cwd: agent.workspace, mcpServers: [] });
      const result = await ctx.request(acp.methods.agent.session.prompt, {
        sessionId,
        prompt: [
          { type: "text", text: "Look at these" },
          { type: "resource_link", name: "main.rs", uri: "file:///w/main.rs" },
          { type: "image", mimeType: "image/png", data: "iVBORw0KGgo=" },
          { type: "resource", resource: { uri: "file:///w/notes.txt", mimeType: "text/plain", text: "remember me" } },
        ],
      });
      assert.deepEqual(result, { stopReason: "end_turn" });
      const user = upstream.requests[0].input.at(-1);
      assert.deepEqual(user, {
        type: "message",
        role: "user",
        content: [
          { type: "input_text", text: "Look at these" },
          { type: "input_text", text: "[@main.rs](file:///w/main.rs)" },
          { type: "input_image", image_url: "data:image/png;base64,iVBORw0KGgo=" },
          { type: "input_text", text: '<context ref="file:///w/notes.txt">\nremember me\n</context>' },
        ],
      });
    });
  });
});

test("session/cancel during a slow stream answers cancelled within a second, and the next prompt works", async () => {
  await scenario({}, async (agent) => {
    upstream.respond(slowStream("resp_slow", "Thinking"), answer("resp_next", "Done"));
    await withClient(agent, {}, async (ctx, client) => {
      await initialize(ctx);
      const { sessionId } = await ctx.request(acp.methods.agent.session.new, { cwd: agent.workspace, mcpServers: [] });
      const prompt = ctx.request(acp.methods.agent.session.prompt, {
        sessionId,
        prompt: [{ type: "text", text: "take your time" }],
      });
      await within(
        client.waitForUpdate((n) => n.update.sessionUpdate === "agent_message_chunk"),
        TIMEOUT_MS,
        "the first chunk of the slow stream",
      );
      await ctx.notify(acp.methods.agent.session.cancel, { sessionId });
      const result = await within(prompt, 1000, "the cancelled prompt's answer");
      assert.deepEqual(result, { stopReason: "cancelled" });

      const next = await ctx.request(acp.methods.agent.session.prompt, {
        sessionId,
        prompt: [{ type: "text", text: "now quickly" }],
      });
      assert.deepEqual(next, { stopReason: "end_turn" });
      assert.equal(texts(client.updates, "agent_message_chunk"), "ThinkingDone");
      assert.deepEqual(client.sdkErrors, []);
    });
  });
});

/** A read-only session (the mode config.toml's policy and sandbox match). */
const READ_ONLY_CONFIG = 'approval_policy = "untrusted"\nsandbox = "readOnly"\n';

test("a shell call under read-only asks permission; allow_once runs it and the turn ends end_turn", async () => {
  await scenario({ config: READ_ONLY_CONFIG }, async (agent) => {
    const command = ["bash", "-lc", "echo hello && echo world"];
    upstream.respond(toolCall("resp_1", "call_1", "shell", { command }), answer("resp_2", "It printed two lines"));
    await withClient(
      agent,
      { onPermission: () => ({ outcome: { outcome: "selected", optionId: "allow_once" } }) },
      async (ctx, client) => {
        await initialize(ctx);
        const session = await ctx.request(acp.methods.agent.session.new, { cwd: agent.workspace, mcpServers: [] });
        assert.equal(session.modes.currentModeId, "read-only");
        const result = await ctx.request(acp.methods.agent.session.prompt, {
          sessionId: session.sessionId,
          prompt: [{ type: "text", text: "say hello" }],
        });
        assert.deepEqual(result, { stopReason: "end_turn" });

        assert.equal(client.permissions.length, 1);
        const asked = client.permissions[0];
        assert.equal(asked.sessionId, session.sessionId);
        assert.equal(asked.toolCall.toolCallId, "call_1");
        assert.deepEqual(
          asked.options.map((o) => [o.optionId, o.kind]),
          [
            ["allow_once", "allow_once"],
            ["allow_always", "allow_always"],
            ["reject_once", "reject_once"],
            ["reject_always", "reject_always"],
          ],
        );

        const calls = client.updates.map((n) => n.update).filter((u) => u.toolCallId === "call_1");
        assert.deepEqual(calls[0], {
          sessionUpdate: "tool_call",
          toolCallId: "call_1",
          title: "echo hello && echo world",
          kind: "execute",
          rawInput: { command, cwd: agent.workspace },
        });
        const last = calls.at(-1);
        assert.equal(last.sessionUpdate, "tool_call_update");
        assert.equal(last.status, "completed");
        assert.deepEqual(last.content, [{ type: "content", content: { type: "text", text: "hello\nworld\n" } }]);
        assert.equal(last.rawOutput.exitCode, 0);

        const output = upstream.requests[1].input.find((i) => i.type === "function_call_output");
        assert.match(output.output, /Exit code: 0/);
        assert.match(output.output, /hello\nworld/);
        assert.equal(texts(client.updates, "agent_message_chunk"), "It printed two lines");
        assert.deepEqual(client.sdkErrors, []);
      },
    );
  });
});

test("reject_once declines the command and the model is told", async () => {
  await scenario({ config: READ_ONLY_CONFIG }, async (agent) => {
    upstream.respond(
      toolCall("resp_1", "call_1", "shell", { command: ["bash", "-lc", "echo hi > out.txt"] }),
      answer("resp_2", "Understood"),
    );
    await withClient(
      agent,
      { onPermission: () => ({ outcome: { outcome: "selected", optionId: "reject_once" } }) },
      async (ctx, client) => {
        await initialize(ctx);
        const { sessionId } = await ctx.request(acp.methods.agent.session.new, { cwd: agent.workspace, mcpServers: [] });
        const result = await ctx.request(acp.methods.agent.session.prompt, {
          sessionId,
          prompt: [{ type: "text", text: "write a file" }],
        });
        assert.deepEqual(result, { stopReason: "end_turn" });
        const last = client.updates
          .map((n) => n.update)
          .filter((u) => u.toolCallId === "call_1")
          .at(-1);
        assert.equal(last.status, "failed");
        assert.equal(last.rawOutput.status, "declined");
        const output = upstream.requests[1].input.find((i) => i.type === "function_call_output");
        assert.match(output.output, /declined/i);
        assert.deepEqual(client.sdkErrors, []);
      },
    );
  });
});

test("reject_always declines that command again without asking", async () => {
  await scenario({ config: READ_ONLY_CONFIG }, async (agent) => {
    const command = ["bash", "-lc", "echo hi > out.txt"];
    upstream.respond(
      toolCall("resp_1", "call_1", "shell", { command }),
      toolCall("resp_2", "call_2", "shell", { command }),
      answer("resp_3", "Giving up"),
    );
    await withClient(
      agent,
      { onPermission: () => ({ outcome: { outcome: "selected", optionId: "reject_always" } }) },
      async (ctx, client) => {
        await initialize(ctx);
        const { sessionId } = await ctx.request(acp.methods.agent.session.new, { cwd: agent.workspace, mcpServers: [] });
        const result = await ctx.request(acp.methods.agent.session.prompt, {
          sessionId,
          prompt: [{ type: "text", text: "write a file, twice" }],
        });
        assert.deepEqual(result, { stopReason: "end_turn" });
        assert.deepEqual(
          client.permissions.map((p) => p.toolCall.toolCallId),
          ["call_1"],
        );
        const outputs = upstream.requests[2].input.filter((i) => i.type === "function_call_output");
        assert.equal(outputs.length, 2);
        for (const output of outputs) assert.match(output.output, /declined/i);
        assert.deepEqual(client.sdkErrors, []);
      },
    );
  });
});

test("a cancelled permission request aborts the turn: the prompt answers cancelled", async () => {
  await scenario({ config: READ_ONLY_CONFIG }, async (agent) => {
    upstream.respond(toolCall("resp_1", "call_1", "shell", { command: ["bash", "-lc", "echo hi > out.txt"] }));
    await withClient(agent, { onPermission: () => ({ outcome: { outcome: "cancelled" } }) }, async (ctx, client) => {
      await initialize(ctx);
      const { sessionId } = await ctx.request(acp.methods.agent.session.new, { cwd: agent.workspace, mcpServers: [] });
      const result = await ctx.request(acp.methods.agent.session.prompt, {
        sessionId,
        prompt: [{ type: "text", text: "write a file" }],
      });
      assert.deepEqual(result, { stopReason: "cancelled" });
      assert.equal(upstream.requests.length, 1);
      assert.deepEqual(client.sdkErrors, []);
    });
  });
});

test("session/new without auth answers -32000, and authenticate with the ChatGPT login unlocks it", async () => {
  await scenario({ apiKey: null }, async (agent) => {
    await withClient(agent, {}, async (ctx, client) => {
      await initialize(ctx);
      await assert.rejects(ctx.request(acp.methods.agent.session.new, { cwd: agent.workspace, mcpServers: [] }), (err) => {
        assert.equal(err.code, -32000);
        assert.equal(err.data.kind, "authRequired");
        return true;
      });
      await assert.rejects(ctx.request(acp.methods.agent.authenticate, { methodId: "openai-api-key" }), (err) => {
        assert.equal(err.code, -32000);
        assert.match(err.message, /OPENAI_API_KEY/);
        return true;
      });

      const login = ctx.request(acp.methods.agent.authenticate, { methodId: "chatgpt" });
      // The browser cannot open here (BROWSER=true), so follow the URL the agent logged, as a
      // person would: the mock issuer approves and redirects to the agent's callback.
      const [, url] = await within(agent.stderrMatch(/open this URL in a browser: (\S+)/), TIMEOUT_MS, "the login URL");
      const page = await fetch(url);
      assert.equal(page.status, 200);
      assert.deepEqual(await within(login, TIMEOUT_MS, "authenticate"), {});

      const session = await ctx.request(acp.methods.agent.session.new, { cwd: agent.workspace, mcpServers: [] });
      assert.equal(typeof session.sessionId, "string");
      // Already logged in with that method: answered at once.
      assert.deepEqual(await ctx.request(acp.methods.agent.authenticate, { methodId: "chatgpt" }), {});
      assert.deepEqual(client.sdkErrors, []);
    });
  });
});

test("set_mode and set_config_option validate their values and answer the full option list", async () => {
  await scenario({}, async (agent) => {
    await withClient(agent, {}, async (ctx, client) => {
      await initialize(ctx);
      const { sessionId } = await ctx.request(acp.methods.agent.session.new, { cwd: agent.workspace, mcpServers: [] });
      assert.deepEqual(await ctx.request(acp.methods.agent.session.setMode, { sessionId, modeId: "read-only" }), {});
      await assert.rejects(ctx.request(acp.methods.agent.session.setMode, { sessionId, modeId: "yolo" }), (err) => {
        assert.equal(err.code, -32602);
        assert.equal(err.data.field, "modeId");
        return true;
      });
      const model = await ctx.request(acp.methods.agent.session.setConfigOption, {
        sessionId,
        configId: "model",
        value: "gpt-5",
      });
      assert.deepEqual(
        model.configOptions.map((o) => [o.id, o.currentValue]),
        [
          ["model", "gpt-5"],
          ["reasoning_effort", "medium"],
        ],
      );
      const effort = await ctx.request(acp.methods.agent.session.setConfigOption, {
        sessionId,
        configId: "reasoning_effort",
        value: "high",
      });
      assert.deepEqual(
        effort.configOptions.map((o) => [o.id, o.currentValue]),
        [
          ["model", "gpt-5"],
          ["reasoning_effort", "high"],
        ],
      );
      await assert.rejects(
        ctx.request(acp.methods.agent.session.setConfigOption, { sessionId, configId: "model", value: "no-such-model" }),
        (err) => {
          assert.equal(err.code, -32602);
          assert.match(err.message, /unknown model `no-such-model`/);
          return true;
        },
      );
      assert.deepEqual(client.sdkErrors, []);
    });
  });
});

test("set_mode and set_config_option change the next prompt's model request and approvals", async () => {
  await scenario({}, async (agent) => {
    const command = ["bash", "-lc", "echo hi > out.txt"];
    upstream.respond(
      answer("resp_1", "Defaults"),
      toolCall("resp_2", "call_2", "shell", { command }),
      answer("resp_3", "Asked first"),
      toolCall("resp_4", "call_4", "shell", { command }),
      answer("resp_5", "Ran at once"),
    );
    await withClient(
      agent,
      { onPermission: () => ({ outcome: { outcome: "selected", optionId: "allow_once" } }) },
      async (ctx, client) => {
        await initialize(ctx);
        const { sessionId } = await ctx.request(acp.methods.agent.session.new, { cwd: agent.workspace, mcpServers: [] });
        const prompt = (text) => ctx.request(acp.methods.agent.session.prompt, { sessionId, prompt: [{ type: "text", text }] });

        assert.deepEqual(await prompt("first"), { stopReason: "end_turn" });
        assert.equal(upstream.requests[0].model, "gpt-5-codex");
        assert.equal(upstream.requests[0].reasoning.effort, "medium");

        await ctx.request(acp.methods.agent.session.setConfigOption, { sessionId, configId: "model", value: "gpt-5" });
        await ctx.request(acp.methods.agent.session.setConfigOption, { sessionId, configId: "reasoning_effort", value: "high" });
        assert.deepEqual(await ctx.request(acp.methods.agent.session.setMode, { sessionId, modeId: "read-only" }), {});
        assert.deepEqual(await prompt("write a file"), { stopReason: "end_turn" });
        // Both model calls of the second prompt use the chosen model and effort.
        for (const request of upstream.requests.slice(1, 3)) {
          assert.equal(request.model, "gpt-5");
          assert.equal(request.reasoning.effort, "high");
        }
        // read-only (untrusted): the write is asked about.
        assert.deepEqual(client.permissions.map((p) => p.toolCall.toolCallId), ["call_2"]);

        assert.deepEqual(await ctx.request(acp.methods.agent.session.setMode, { sessionId, modeId: "full-access" }), {});
        assert.deepEqual(await prompt("write it again"), { stopReason: "end_turn" });
        // full-access (never): no new permission request, and the command ran.
        assert.deepEqual(client.permissions.map((p) => p.toolCall.toolCallId), ["call_2"]);
        const last = client.updates
          .map((n) => n.update)
          .filter((u) => u.toolCallId === "call_4")
          .at(-1);
        assert.equal(last.status, "completed");
        assert.equal(upstream.requests[3].model, "gpt-5");
        assert.equal(upstream.requests.length, 5);
        assert.deepEqual(client.sdkErrors, []);
      },
    );
  });
});

test("session/new's mcpServers reach the model; an MCP call is a tool_call with the server's content", async () => {
  await scenario({}, async (agent) => {
    const server = fileURLToPath(new URL("../../mcp-servers/fault-server.mjs", import.meta.url));
    upstream.respond(
      toolCall("resp_1", "call_1", "mcp__notes__echo", { message: "hi" }),
      answer("resp_2", "The server echoed"),
    );
    await withClient(agent, {}, async (ctx, client) => {
      await initialize(ctx);
      const { sessionId } = await ctx.request(acp.methods.agent.session.new, {
        cwd: agent.workspace,
        mcpServers: [{ name: "notes", command: process.execPath, args: [server], env: [] }],
      });
      const result = await ctx.request(acp.methods.agent.session.prompt, {
        sessionId,
        prompt: [{ type: "text", text: "echo hi" }],
      });
      assert.deepEqual(result, { stopReason: "end_turn" });
      assert.ok(
        upstream.requests[0].tools.some((t) => t.name === "mcp__notes__echo"),
        "the model is offered the session's MCP tool",
      );
      const calls = client.updates.map((n) => n.update).filter((u) => u.toolCallId === "call_1");
      assert.deepEqual(
        [calls[0].sessionUpdate, calls[0].title, calls[0].kind ?? "other", calls[0].rawInput],
        ["tool_call", "echo (notes)", "other", { message: "hi" }],
      );
      const last = calls.at(-1);
      assert.equal(last.status, "completed");
      assert.deepEqual(last.content, [{ type: "content", content: { type: "text", text: "echo: hi" } }]);
      assert.deepEqual(client.sdkErrors, []);
    });
  });
});

test("session/close forgets the session; an unknown session is sessionNotFound", async () => {
  await scenario({}, async (agent) => {
    await withClient(agent, {}, async (ctx, client) => {
      await initialize(ctx);
      const { sessionId } = await ctx.request(acp.methods.agent.session.new, { cwd: agent.workspace, mcpServers: [] });
      const listed = await ctx.request(acp.methods.agent.session.list, {});
      assert.deepEqual(
        listed.sessions.map((s) => [s.sessionId, s.cwd]),
        [[sessionId, agent.workspace]],
      );
      assert.deepEqual(await ctx.request(acp.methods.agent.session.close, { sessionId }), {});
      await assert.rejects(
        ctx.request(acp.methods.agent.session.prompt, { sessionId, prompt: [{ type: "text", text: "hi" }] }),
        (err) => {
          assert.equal(err.code, -32602);
          assert.equal(err.data.kind, "sessionNotFound");
          return true;
        },
      );
      assert.deepEqual(client.sdkErrors, []);
    });
  });
});
