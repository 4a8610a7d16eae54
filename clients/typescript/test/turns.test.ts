/**
 * Turns against the real `agent-server` binary and a mock upstream: streamed events,
 * `submitAndWait`, per-session iterators, approvals, interrupts and shutdown mid-turn.
 */

import assert from "node:assert/strict";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { test } from "node:test";

import type {
  CommandExecutionItem,
  RequestApprovalParams,
  SessionEventNotification,
  TurnCompletedEvent,
  Usage,
} from "../src/index.js";
import { AgentServerError } from "../src/index.js";
import { fixturesDir, MockUpstream, startServer, tempDir, type Harness } from "./harness.js";

const TIMEOUT = { timeout: 60_000 };

/** The usage `text_answer.sse` reports. */
const textAnswerUsage: Usage = {
  inputTokens: 1830,
  cachedInputTokens: 1536,
  outputTokens: 48,
  reasoningOutputTokens: 32,
  totalTokens: 1878,
};

/** A server whose model is a mock upstream serving `fixtures` in order. */
async function withUpstream(
  fixtures: string[],
  approvals: boolean,
  body: (h: Harness, upstream: MockUpstream, cwd: string) => Promise<void>,
  onApproval?: Parameters<Harness["client"]["onApprovalRequest"]>[0],
): Promise<void> {
  const upstream = await MockUpstream.start(fixtures);
  const cwd = tempDir("cwd");
  let harness: Harness | undefined;
  try {
    harness = await startServer(
      { OPENAI_API_KEY: "test", OPENAI_BASE_URL: upstream.baseUrl },
      { clientInfo: { name: "ts-test", version: "9.9.9" }, capabilities: { approvals } },
    );
    if (onApproval !== undefined) harness.client.onApprovalRequest(onApproval);
    await body(harness, upstream, cwd);
  } finally {
    await harness?.cleanup();
    await upstream.stop();
    rmSync(cwd, { recursive: true, force: true });
  }
}

/** Checks what every turn guarantees: seq rises by 1, one turnStarted first, one turnCompleted last. */
function assertTurnShape(events: SessionEventNotification[]): void {
  assert.ok(events.length >= 2, `a turn has at least two events, got ${events.length}`);
  const first = events[0]!.seq;
  assert.deepEqual(
    events.map((e) => e.seq),
    events.map((_e, i) => first + i),
  );
  assert.equal(events[0]!.event.type, "turnStarted");
  assert.deepEqual(
    events.map((e) => e.event.type).filter((t) => t === "turnStarted" || t === "turnCompleted"),
    ["turnStarted", "turnCompleted"],
  );
  assert.equal(events.at(-1)!.event.type, "turnCompleted");
}

function commandItems(events: SessionEventNotification[], which: "itemStarted" | "itemCompleted"): CommandExecutionItem[] {
  const items: CommandExecutionItem[] = [];
  for (const { event } of events) {
    if (event.type === which && event.item.type === "commandExecution") items.push(event.item);
  }
  return items;
}

/** The `function_call_output` the server sent upstream for `callId`. */
function toolOutput(upstream: MockUpstream, index: number, callId: string): string {
  const input = upstream.requests[index]?.body.input as Array<Record<string, unknown>> | undefined;
  const output = input?.find((item) => item.type === "function_call_output" && item.call_id === callId);
  assert.ok(output !== undefined, `request ${index} carries the output of ${callId}`);
  return String(output.output);
}

test("submitAndWait streams a text answer and resolves with its turnCompleted", TIMEOUT, async () => {
  await withUpstream(["text_answer.sse"], false, async ({ client }, upstream, cwd) => {
    const session = await client.newSession({ cwd });
    const events: SessionEventNotification[] = [];
    const done = await client.submitAndWait(
      { sessionId: session.sessionId, text: "say hello" },
      { onEvent: (n) => events.push(n) },
    );
    const expected: TurnCompletedEvent = {
      type: "turnCompleted",
      status: "completed",
      lastAgentMessage: "Hello there!",
      usage: textAnswerUsage,
    };
    assert.deepEqual(done, expected);
    assertTurnShape(events);
    assert.equal(events[0]!.seq, 1);
    assert.deepEqual(events[0]!.event, {
      type: "turnStarted",
      model: "gpt-5-codex",
      reasoningEffort: "medium",
      approvalPolicy: "untrusted",
      sandbox: "workspaceWrite",
      cwd,
    });
    const deltas = events.flatMap(({ event }) => (event.type === "agentMessageDelta" ? [event.delta] : []));
    assert.deepEqual(deltas, ["Hello", " there!"]);
    const messages = events.flatMap(({ event }) =>
      event.type === "itemCompleted" && event.item.type === "agentMessage" ? [event.item.text] : [],
    );
    assert.deepEqual(messages, ["Hello there!"]);

    assert.equal(upstream.requests.length, 1);
    const request = upstream.requests[0]!;
    assert.deepEqual([request.method, request.url], ["POST", "/v1/responses"]);
    assert.equal(request.headers.authorization, "Bearer test");
    assert.equal(request.headers["session_id"], session.sessionId);
    assert.deepEqual([request.body.model, request.body.stream], ["gpt-5-codex", true]);
    const listed = await client.listSessions();
    assert.deepEqual(listed, {
      sessions: [{ ...session, status: "idle", title: "say hello", turnCount: 1, updatedAt: listed.sessions[0]!.updatedAt }],
      nextCursor: null,
    });
  });
});

test("stored sessions: list, read, retitle, close, resume with seq going on, fork, archive, delete", TIMEOUT, async () => {
  await withUpstream(["text_answer.sse", "text_answer.sse", "text_answer.sse"], false, async ({ client }, upstream, cwd) => {
    const session = await client.newSession({ cwd });
    const first: SessionEventNotification[] = [];
    await client.submitAndWait({ sessionId: session.sessionId, text: "first question" }, { onEvent: (n) => first.push(n) });
    const id = session.sessionId;

    const page = await client.listSessions({ stored: true, cwd, search: "FIRST" });
    assert.deepEqual(page.sessions.map((s) => [s.sessionId, s.title, s.turnCount, s.loaded]), [[id, "first question", 1, true]]);
    assert.equal(page.nextCursor, null);
    assert.deepEqual(await client.setSessionTitle({ sessionId: id, title: "Renamed" }), {});
    const read = await client.readSession({ sessionId: id });
    assert.equal(read.session.title, "Renamed");
    assert.deepEqual(read.turns.map((t) => [t.status, t.input, t.items.map((i) => i.type)]), [
      ["completed", [{ type: "text", text: "first question" }], ["reasoning", "agentMessage"]],
    ]);

    await client.closeSession({ sessionId: id });
    const submitted = await client.submit({ sessionId: id, text: "no" }).catch((e: unknown) => e);
    assert.ok(submitted instanceof AgentServerError && submitted.kind === "sessionNotFound", String(submitted));
    const resumed = await client.resumeSession({ sessionId: id });
    assert.deepEqual([resumed.session.loaded, resumed.turns.length], [true, 1]);
    const second: SessionEventNotification[] = [];
    await client.submitAndWait({ sessionId: id, text: "second" }, { onEvent: (n) => second.push(n) });
    assert.equal(second[0]!.seq, first.at(-1)!.seq + 1);
    // The resumed conversation sent the first turn's history upstream (after the environment
    // message, which is not repeated).
    const input = upstream.requests[1]!.body.input as Array<Record<string, unknown>>;
    assert.deepEqual(input.map((i) => i.type), ["message", "message", "reasoning", "message", "message"]);

    const fork = await client.forkSession({ sessionId: id, turnId: read.turns[0]!.turnId });
    assert.deepEqual(fork.session.forkedFrom, { sessionId: id, turnId: read.turns[0]!.turnId });
    assert.equal(fork.turns.length, 1);
    assert.deepEqual(await client.archiveSession({ sessionId: fork.session.sessionId }), {});
    const archived = await client.listSessions({ stored: true, archived: true });
    assert.deepEqual(archived.sessions.map((s) => s.sessionId), [fork.session.sessionId]);
    assert.deepEqual(await client.unarchiveSession({ sessionId: fork.session.sessionId }), {});
    assert.deepEqual(await client.deleteSession({ sessionId: fork.session.sessionId }), {});
    const gone = await client.readSession({ sessionId: fork.session.sessionId }).catch((e: unknown) => e);
    assert.ok(gone instanceof AgentServerError && gone.kind === "sessionNotFound", String(gone));
  });
});

test("project instructions and the environment context open the conversation; instructionSources lists the files", TIMEOUT, async () => {
  await withUpstream(["text_answer.sse"], false, async ({ client }, upstream, cwd) => {
    writeFileSync(join(cwd, "AGENTS.md"), "Run the linter before committing.\n");
    const session = await client.newSession({ cwd, sandbox: "readOnly", approvalPolicy: "never" });
    assert.deepEqual(session.instructionSources, []);
    const done = await client.submitAndWait({ sessionId: session.sessionId, text: "hi" });
    assert.equal(done.status, "completed");
    // The server names the login shell after $SHELL, which the test server inherits.
    const shell = basename(process.env.SHELL ?? "") || "bash";
    const input = upstream.requests[0]?.body.input as Array<{ role: string; content: Array<{ text: string }> }>;
    assert.deepEqual(
      input.slice(0, 3).map((item) => [item.role, item.content[0]?.text]),
      [
        ["user", `# AGENTS.md instructions for ${cwd}\n\n<INSTRUCTIONS>\nRun the linter before committing.\n</INSTRUCTIONS>`],
        [
          "user",
          `<environment_context>\n  <cwd>${cwd}</cwd>\n  <approval_policy>never</approval_policy>\n  <sandbox_mode>readOnly</sandbox_mode>\n  <network_access>restricted</network_access>\n  <shell>${shell}</shell>\n</environment_context>`,
        ],
        ["user", "hi"],
      ],
    );
    const [listed] = (await client.listSessions()).sessions;
    assert.deepEqual(listed?.instructionSources, [join(cwd, "AGENTS.md")]);
  });
});

test("compact runs as a turn of its own with a contextSummary item and contextCompacted", TIMEOUT, async () => {
  await withUpstream(["text_answer.sse", "text_answer.sse"], false, async ({ client }, upstream, cwd) => {
    const session = await client.newSession({ cwd });
    await client.submitAndWait({ sessionId: session.sessionId, text: "say hello" });
    const iterator = client.events(session.sessionId);
    const turn = await client.compact({ sessionId: session.sessionId });
    const events: SessionEventNotification[] = [];
    for await (const notification of iterator) {
      events.push(notification);
      if (notification.event.type === "turnCompleted") break;
    }
    assertTurnShape(events);
    assert.ok(events.every((e) => e.turnId === turn.turnId));
    const summaries = events.flatMap(({ event }) =>
      event.type === "itemCompleted" && event.item.type === "contextSummary" ? [event.item] : [],
    );
    assert.deepEqual(
      summaries.map((item) => item.text),
      ["Hello there!"],
    );
    const compacted = events.flatMap(({ event }) => (event.type === "contextCompacted" ? [event] : []));
    assert.deepEqual(compacted, [{ type: "contextCompacted", tokensBefore: 1878, summaryItemId: summaries[0]!.id }]);
    const last = events.at(-1)!.event;
    assert.equal(last.type === "turnCompleted" ? last.status : last.type, "completed");
    const input = upstream.requests[1]?.body.input as Array<{ role: string; content: Array<{ text: string }> }>;
    assert.ok(input.at(-1)!.content[0]!.text.includes("handoff summary"));
  });
});

test("submit without a session creates one; events(sessionId) follows it in order", TIMEOUT, async () => {
  await withUpstream(["text_answer.sse", "text_answer.sse"], false, async ({ client }, _upstream, cwd) => {
    const first = await client.submitAndWait({ text: "hello" });
    assert.equal(first.status, "completed");
    const [session] = (await client.listSessions()).sessions;
    assert.ok(session !== undefined);

    // A second turn in the same session, read through the iterator.
    const iterator = client.events(session.sessionId);
    const turn = await client.submit({ sessionId: session.sessionId, input: [{ type: "text", text: "again" }] });
    assert.equal(turn.sessionId, session.sessionId);
    const events: SessionEventNotification[] = [];
    for await (const notification of iterator) {
      events.push(notification);
      if (notification.event.type === "turnCompleted") break;
    }
    assertTurnShape(events);
    assert.ok(events.every((e) => e.turnId === turn.turnId));
    assert.ok(events[0]!.seq > 1, "seq keeps rising across the session's turns");
    void cwd;
  });
});

test("an approved command runs and its output goes back to the model", TIMEOUT, async () => {
  const asked: RequestApprovalParams[] = [];
  await withUpstream(
    ["shell_touch.sse", "after_shell_call.sse"],
    true,
    async ({ client }, upstream, cwd) => {
      const session = await client.newSession({ cwd, approvalPolicy: "untrusted" });
      const events: SessionEventNotification[] = [];
      let turnId = "";
      const done = await client.submitAndWait(
        { sessionId: session.sessionId, text: "create a file" },
        { onEvent: (n) => events.push(n), onSubmitted: (r) => (turnId = r.turnId) },
      );
      assert.deepEqual([done.status, done.lastAgentMessage], [
        "completed",
        "There are two entries: `Cargo.toml` and `src`.",
      ]);
      assertTurnShape(events);
      assert.equal(asked.length, 1);
      const { reason: _reason, ...request } = asked[0]!;
      assert.deepEqual(request, {
        sessionId: session.sessionId,
        turnId,
        itemId: "call_Xy12",
        kind: "commandExecution",
        command: ["bash", "-lc", "touch approved.txt"],
        cwd,
      });
      assert.ok(existsSync(join(cwd, "approved.txt")), "the approved command ran in the session cwd");
      const [completed] = commandItems(events, "itemCompleted");
      assert.deepEqual([completed?.id, completed?.status, completed?.exitCode], ["call_Xy12", "completed", 0]);
      assert.match(toolOutput(upstream, 1, "call_Xy12"), /^Exit code: 0\n/);
    },
    (params) => {
      asked.push(params);
      return { decision: "approve" };
    },
  );
});

test("a denied command does not run and the model is told", TIMEOUT, async () => {
  await withUpstream(
    ["shell_touch.sse", "after_shell_call.sse"],
    true,
    async ({ client }, upstream, cwd) => {
      const session = await client.newSession({ cwd, approvalPolicy: "untrusted" });
      const events: SessionEventNotification[] = [];
      const done = await client.submitAndWait(
        { sessionId: session.sessionId, text: "create a file" },
        { onEvent: (n) => events.push(n) },
      );
      assert.equal(done.status, "completed");
      assert.equal(existsSync(join(cwd, "approved.txt")), false);
      assert.deepEqual(
        commandItems(events, "itemCompleted").map((i) => [i.id, i.status]),
        [["call_Xy12", "declined"]],
      );
      assert.match(toolOutput(upstream, 1, "call_Xy12"), /declined/i);
    },
    () => ({ decision: "deny" }),
  );
});

test("a client without the approvals capability is never asked; the command is declined", TIMEOUT, async () => {
  let asked = 0;
  await withUpstream(
    ["shell_touch.sse", "after_shell_call.sse"],
    false,
    async ({ client }, upstream, cwd) => {
      const session = await client.newSession({ cwd, approvalPolicy: "untrusted" });
      const events: SessionEventNotification[] = [];
      const done = await client.submitAndWait(
        { sessionId: session.sessionId, text: "create a file" },
        { onEvent: (n) => events.push(n) },
      );
      assert.equal(done.status, "completed");
      assert.equal(asked, 0);
      assert.equal(existsSync(join(cwd, "approved.txt")), false);
      assert.deepEqual(
        commandItems(events, "itemCompleted").map((i) => i.status),
        ["declined"],
      );
      assert.match(toolOutput(upstream, 1, "call_Xy12"), /declined/i);
    },
    () => {
      asked += 1;
      return { decision: "approve" };
    },
  );
});

test("an interrupt withdraws a pending approval and the turn completes interrupted", TIMEOUT, async () => {
  let withdrawn = false;
  let approvalAsked: (p: RequestApprovalParams) => void = () => undefined;
  const asked = new Promise<RequestApprovalParams>((ok) => (approvalAsked = ok));
  await withUpstream(
    ["shell_touch.sse"],
    true,
    async ({ client }, _upstream, cwd) => {
      const session = await client.newSession({ cwd, approvalPolicy: "untrusted" });
      const waiting = client.submitAndWait({ sessionId: session.sessionId, text: "create a file" });
      const request = await asked;
      assert.deepEqual(await client.interrupt({ sessionId: session.sessionId, turnId: request.turnId }), {});
      const done = await waiting;
      assert.equal(done.status, "interrupted");
      assert.equal(withdrawn, true);
      assert.equal(existsSync(join(cwd, "approved.txt")), false);
    },
    (params, { signal }) =>
      new Promise((resolve) => {
        signal.addEventListener("abort", () => {
          withdrawn = true;
          resolve({ decision: "deny" });
        });
        approvalAsked(params);
      }),
  );
});

test("an abort answer ends the turn interrupted", TIMEOUT, async () => {
  await withUpstream(
    ["shell_touch.sse"],
    true,
    async ({ client }, _upstream, cwd) => {
      const session = await client.newSession({ cwd });
      const done = await client.submitAndWait({ sessionId: session.sessionId, text: "create a file" });
      assert.equal(done.status, "interrupted");
      assert.equal(existsSync(join(cwd, "approved.txt")), false);
    },
    () => ({ decision: "abort" }),
  );
});

test("close during a turn: the turn completes interrupted, then the server exits 0", TIMEOUT, async () => {
  let approvalAsked: () => void = () => undefined;
  const asked = new Promise<void>((ok) => (approvalAsked = ok));
  await withUpstream(
    ["shell_touch.sse"],
    true,
    async ({ client }, _upstream, cwd) => {
      const session = await client.newSession({ cwd });
      const completions: TurnCompletedEvent[] = [];
      client.onEvent(({ event }) => {
        if (event.type === "turnCompleted") completions.push(event);
      });
      await client.submit({ sessionId: session.sessionId, text: "create a file" });
      await asked;
      assert.deepEqual(await client.close(), { code: 0, signal: null });
      assert.deepEqual(
        completions.map((c) => c.status),
        ["interrupted"],
      );
    },
    () => {
      approvalAsked();
      // Never answered: shutdown has to end the turn.
      return new Promise(() => undefined);
    },
  );
});

test("AGENT_SERVER_SSE_FIXTURE replays a transcript offline", TIMEOUT, async () => {
  const harness = await startServer({
    OPENAI_API_KEY: "test",
    AGENT_SERVER_SSE_FIXTURE: join(fixturesDir, "text_answer.sse"),
  });
  try {
    const done = await harness.client.submitAndWait({ text: "say hello" });
    assert.deepEqual(done, {
      type: "turnCompleted",
      status: "completed",
      lastAgentMessage: "Hello there!",
      usage: textAnswerUsage,
    });
  } finally {
    await harness.cleanup();
  }
});
