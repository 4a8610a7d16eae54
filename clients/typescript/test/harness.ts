/**
 * Test harness: the real `agent-server` binary with a throw-away home, and a mock Responses API
 * upstream on 127.0.0.1 that streams the SSE transcripts in `clients/fixtures/`.
 */

import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { AgentServerClient, type InitializeParams, type SpawnOptions } from "../src/index.js";

/** clients/typescript (this file runs from dist/test/). */
const packageDir = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** The SSE transcripts shared by every client's tests. */
export const fixturesDir = resolve(packageDir, "../fixtures");

/** The server binary: `$AGENT_SERVER_BIN`, else the workspace's debug build. */
export const serverBin = process.env.AGENT_SERVER_BIN ?? resolve(packageDir, "../../target/debug/agent-server");

/** One transcript's text. */
export function fixture(name: string): string {
  return readFileSync(join(fixturesDir, name), "utf8");
}

/** A fresh directory, removed by the returned cleanup. */
export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `agent-server-ts-${prefix}-`));
}

/** One request the upstream received. */
export interface UpstreamRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: Record<string, unknown>;
}

/** A mock Responses API: answers each `POST /v1/responses` with the next transcript in order. */
export class MockUpstream {
  readonly requests: UpstreamRequest[] = [];
  private readonly server: Server;
  private readonly bodies: string[];

  private constructor(bodies: string[]) {
    this.bodies = bodies;
    this.server = createServer((req, res) => {
      let raw = "";
      req.setEncoding("utf8");
      req.on("data", (chunk: string) => (raw += chunk));
      req.on("end", () => {
        let body: Record<string, unknown> = {};
        try {
          body = JSON.parse(raw) as Record<string, unknown>;
        } catch {
          // Kept empty: a test asserting on the body will show what went wrong.
        }
        this.requests.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body });
        const next = this.bodies.shift();
        if (req.method !== "POST" || req.url !== "/v1/responses" || next === undefined) {
          res.writeHead(500, { "content-type": "application/json" });
          res.end(JSON.stringify({ error: { message: `mock upstream has no answer for ${req.method} ${req.url}` } }));
          return;
        }
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.end(next);
      });
    });
  }

  /** Starts serving `fixtures` (file names in clients/fixtures) in order. */
  static async start(fixtures: string[]): Promise<MockUpstream> {
    const upstream = new MockUpstream(fixtures.map(fixture));
    await new Promise<void>((ok) => upstream.server.listen(0, "127.0.0.1", ok));
    return upstream;
  }

  /** The `OPENAI_BASE_URL` pointing at this server. */
  get baseUrl(): string {
    const { port } = this.server.address() as AddressInfo;
    return `http://127.0.0.1:${port}/v1`;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((ok) => this.server.close(() => ok()));
  }
}

/** The environment for a server under test: no inherited OpenAI settings, a private home. */
export function serverEnv(home: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith("OPENAI_") && !key.startsWith("AGENT_SERVER_") && key !== "RUST_LOG") env[key] = value;
  }
  return { ...env, AGENT_SERVER_HOME: home, ...extra };
}

/** A server under test and what to clean up after it. */
export interface Harness {
  client: AgentServerClient;
  home: string;
  cleanup(): Promise<void>;
}

/** Spawns the server with a fresh home; `env` adds variables; does not initialize. */
export function spawnServer(env: Record<string, string> = {}, options: SpawnOptions = {}): Harness {
  const home = tempDir("home");
  const client = AgentServerClient.spawn({ binaryPath: serverBin, env: serverEnv(home, env), ...options });
  return {
    client,
    home,
    async cleanup() {
      await client.close({ timeoutMs: 5000 });
      rmSync(home, { recursive: true, force: true });
    },
  };
}

/** Spawns and initializes. */
export async function startServer(
  env: Record<string, string> = {},
  init: InitializeParams = { clientInfo: { name: "ts-test", version: "9.9.9" } },
  options: SpawnOptions = {},
): Promise<Harness> {
  const harness = spawnServer(env, options);
  await harness.client.initialize(init);
  return harness;
}

/** Settles when `predicate` holds for a value passed to the returned `push`. */
export function waitFor<T>(predicate: (value: T) => boolean): { push: (value: T) => void; promise: Promise<T> } {
  let resolveIt: (value: T) => void = () => undefined;
  const promise = new Promise<T>((ok) => (resolveIt = ok));
  return {
    push: (value) => {
      if (predicate(value)) resolveIt(value);
    },
    promise,
  };
}
