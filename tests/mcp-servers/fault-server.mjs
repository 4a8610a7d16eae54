// A small MCP server of the project's own, for the fault cases of the end-to-end tests. Built on
// the official TypeScript SDK. Usage: node fault-server.mjs [--mode MODE] [--http] [marker...]
//
// Modes (stdio): `ok` (default) serves the tools below; `hang-init` never answers `initialize`;
// `garbage` writes lines that are not JSON-RPC to stdout before and between its messages;
// `exit` exits at once with status 3. `--child` also starts a grandchild process that lives
// until it is killed, so tests can check that the whole process group goes. `--http` serves
// Streamable HTTP on 127.0.0.1 (a free port) and prints `listening <url>` on stdout.
// Extra arguments are ignored: tests pass a unique marker to find the processes afterwards.
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { z } from "zod";

const args = process.argv.slice(2);
const mode = args.includes("--mode") ? args[args.indexOf("--mode") + 1] : "ok";

if (args.includes("--child")) {
  spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)", "--", ...args], { stdio: "ignore" });
}

function build() {
  const server = new McpServer({ name: "fault-server", version: "1.0.0" });
  server.registerTool(
    "echo",
    {
      description: "Echoes the message back",
      inputSchema: { message: z.string() },
      annotations: { readOnlyHint: true },
    },
    async ({ message }) => ({ content: [{ type: "text", text: `echo: ${message}` }] }),
  );
  server.registerTool(
    "write_note",
    {
      description: "Pretends to write a note (not read-only)",
      inputSchema: { note: z.string() },
    },
    async ({ note }) => ({ content: [{ type: "text", text: `wrote: ${note}` }] }),
  );
  server.registerTool(
    "sleep",
    {
      description: "Answers after `ms` milliseconds",
      inputSchema: { ms: z.number() },
      annotations: { readOnlyHint: true },
    },
    async ({ ms }) => {
      await new Promise((resolve) => setTimeout(resolve, ms));
      return { content: [{ type: "text", text: `slept ${ms}` }] };
    },
  );
  server.registerTool(
    "crash",
    {
      description: "Exits the server process in the middle of the call",
      inputSchema: {},
      annotations: { readOnlyHint: true },
    },
    async () => {
      process.exit(7);
    },
  );
  server.registerTool(
    "fail",
    {
      description: "Answers with an error result",
      inputSchema: {},
      annotations: { readOnlyHint: true },
    },
    async () => ({ content: [{ type: "text", text: "it went wrong" }], isError: true }),
  );
  server.registerTool(
    "mixed",
    {
      description: "Answers text, an image and structured content",
      inputSchema: {},
      annotations: { readOnlyHint: true },
    },
    async () => ({
      content: [
        { type: "text", text: "first" },
        { type: "image", data: "iVBORw0KGgo=", mimeType: "image/png" },
      ],
      structuredContent: { answer: 42 },
    }),
  );
  server.registerTool(
    "noisy",
    {
      description: "Writes garbage to stdout, then answers",
      inputSchema: {},
      annotations: { readOnlyHint: true },
    },
    async () => {
      process.stdout.write("this is not JSON-RPC\n");
      return { content: [{ type: "text", text: "still here" }] };
    },
  );
  return server;
}

if (mode === "exit") {
  process.exit(3);
} else if (mode === "hang-init") {
  process.stdin.resume();
  setInterval(() => {}, 1000);
} else if (args.includes("--http")) {
  const http = createServer(async (req, res) => {
    if (req.method !== "POST") {
      res.writeHead(405).end();
      return;
    }
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    const server = build();
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: undefined,
      enableJsonResponse: true,
    });
    res.on("close", () => {
      transport.close();
      server.close();
    });
    await server.connect(transport);
    await transport.handleRequest(req, res, body);
  });
  http.listen(0, "127.0.0.1", () => {
    process.stdout.write(`listening http://127.0.0.1:${http.address().port}/mcp\n`);
  });
} else {
  if (mode === "garbage") {
    process.stdout.write("starting up... (not JSON)\n{\"half\": \n");
  }
  await build().connect(new StdioServerTransport());
}
