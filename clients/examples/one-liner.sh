#!/usr/bin/env bash
# The smallest complete use of agent-server: one JSON line in, the answer out.
#   AGENT_SERVER_SSE_FIXTURE=clients/fixtures/text_answer.sse OPENAI_API_KEY=unused clients/examples/one-liner.sh
set -euo pipefail
printf '%s\n' '{"jsonrpc":"2.0","id":1,"method":"session/submit","params":{"text":"Say hello"}}' | "${AGENT_SERVER_BIN:-agent-server}" | jq -r 'select(.params.event.type? == "turnCompleted") | .params.event.lastAgentMessage'
