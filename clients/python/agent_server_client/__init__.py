"""Drive ``agent-server`` from Python over its JSON-RPC stdio protocol (asyncio, stdlib only).

    import asyncio
    from agent_server_client import AgentServerClient

    async def main() -> None:
        async with AgentServerClient() as client:
            await client.initialize({"clientInfo": {"name": "my-script"}})
            done = await client.submit_and_wait({"text": "list the files"})
            print(done.get("lastAgentMessage"))

    asyncio.run(main())

``SyncClient`` wraps the same surface for scripts without asyncio.
"""

from .client import (
    AgentServerClient,
    AnyNotificationCallback,
    ApprovalHandler,
    EventStream,
    NotificationCallback,
    Unsubscribe,
)
from .errors import AgentServerError, ConnectionClosedError, ErrorCode
from .protocol import PROTOCOL_VERSION
from .sync import SyncClient

__version__ = "0.1.0"

__all__ = [
    "AgentServerClient",
    "AgentServerError",
    "AnyNotificationCallback",
    "ApprovalHandler",
    "ConnectionClosedError",
    "ErrorCode",
    "EventStream",
    "NotificationCallback",
    "PROTOCOL_VERSION",
    "SyncClient",
    "Unsubscribe",
    "__version__",
]
