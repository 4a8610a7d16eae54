/**
 * `@agent-server/client`: drive `agent-server` from Node.js over its JSON-RPC stdio protocol.
 *
 * ```ts
 * import { AgentServerClient } from "@agent-server/client";
 * const client = await AgentServerClient.start({}, { clientInfo: { name: "my-ide" } });
 * const done = await client.submitAndWait({ text: "list the files" });
 * console.log(done.lastAgentMessage);
 * await client.close();
 * ```
 */

export {
  AgentServerClient,
  CLIENT_VERSION,
  type ApprovalContext,
  type ApprovalHandler,
  type Disposable,
  type ExitStatus,
  type RequestOptions,
  type SpawnOptions,
  type SubmitAndWaitOptions,
} from "./client.js";
export { AgentServerError, ConnectionClosedError, ErrorCode } from "./errors.js";
export * from "./generated/methods.js";
export type * from "./generated/protocol.js";
