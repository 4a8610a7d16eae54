// A snippet to paste into an IDE extension: start agent-server once, run prompts in the workspace,
// stream the answer into your UI, and ask the user before commands run or files change.
//
// In VS Code, `ask` would be `vscode.window.showWarningMessage(text, { modal: true }, "Allow")`,
// `onDelta` would append to a webview or output channel, and `dispose` goes in `context.subscriptions`.
//
// Run on its own (offline, replaying a recorded answer):
//   AGENT_SERVER_SSE_FIXTURE=clients/fixtures/text_answer.sse OPENAI_API_KEY=unused \
//     node clients/examples/dist/extension-snippet.js "Say hello"

import { pathToFileURL } from "node:url";

import { AgentServerClient, type RequestApprovalParams, type TurnCompletedEvent } from "@agent-server/client";

export interface AgentUi {
  /** Shows the question; resolves true when the user allows it. */
  ask(question: string, signal: AbortSignal): Promise<boolean>;
  /** Streams the agent's answer. */
  onDelta(text: string): void;
}

export class Agent {
  private constructor(
    private readonly client: AgentServerClient,
    private readonly sessionId: string,
  ) {}

  /** Starts the server for one workspace folder. */
  static async start(workspaceFolder: string, ui: AgentUi, binaryPath?: string): Promise<Agent> {
    const client = AgentServerClient.spawn({ binaryPath, onStderr: (line) => console.debug(line) });
    // Set before initialize: the client then declares that it answers approval requests.
    client.onApprovalRequest(async (request, { signal }) => ({
      decision: (await ui.ask(describe(request), signal)) ? "approve" : "deny",
    }));
    try {
      await client.initialize({ clientInfo: { name: "my-extension", version: "1.0.0" } });
      const session = await client.newSession({ cwd: workspaceFolder });
      client.onEvent(({ sessionId, event }) => {
        if (sessionId === session.sessionId && event.type === "agentMessageDelta") ui.onDelta(event.delta);
      });
      return new Agent(client, session.sessionId);
    } catch (error) {
      client.dispose();
      throw error;
    }
  }

  /** Runs one prompt to the end; aborting `signal` interrupts the turn. */
  ask(prompt: string, signal?: AbortSignal): Promise<TurnCompletedEvent> {
    return this.client.submitAndWait({ sessionId: this.sessionId, text: prompt }, { signal });
  }

  /** Shuts the server down (running turns end `interrupted`). */
  async dispose(): Promise<void> {
    await this.client.close();
  }
}

function describe(request: RequestApprovalParams): string {
  if (request.kind === "commandExecution") return `Allow the agent to run \`${(request.command ?? []).join(" ")}\`?`;
  return `Allow the agent to change ${(request.changes ?? []).map((c) => c.path).join(", ")}?`;
}

// Run directly: a terminal stands in for the editor's UI.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const ui: AgentUi = {
    ask: async (question) => {
      console.error(`${question} (declined: no editor here)`);
      return false;
    },
    onDelta: (text) => process.stdout.write(text),
  };
  const agent = await Agent.start(process.cwd(), ui);
  const done = await agent.ask(process.argv[2] ?? "Say hello");
  process.stdout.write("\n");
  await agent.dispose();
  process.exitCode = done.status === "completed" ? 0 : 1;
}
