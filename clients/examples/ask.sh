#!/usr/bin/env bash
# Ask agent-server one question from the shell and print the answer: one `session/submit` line
# in, the `turnCompleted` event's `lastAgentMessage` out. On end of input the server lets the turn
# finish, then exits, so no `initialize` or `shutdown` is needed.
#
#   clients/examples/ask.sh "What is in this directory?"
#
# Offline, replaying a recorded answer instead of calling the model:
#   AGENT_SERVER_SSE_FIXTURE=clients/fixtures/text_answer.sse OPENAI_API_KEY=unused clients/examples/ask.sh hello
set -euo pipefail
prompt="${1:-Say hello}"

jq -cn --arg text "$prompt" '{jsonrpc: "2.0", id: 1, method: "session/submit", params: {text: $text}}' \
  | "${AGENT_SERVER_BIN:-agent-server}" \
  | jq -r 'select(.method == "session/event" and .params.event.type == "turnCompleted") | .params.event.lastAgentMessage // empty'

