"""The agent's local API: HTTP+JSON on a Unix socket (``<runtime dir>/evesnap.sock``).

`models` holds what crosses the socket (pydantic v2; docs/api/openapi.json is
generated from them), `service` owns the agent's one orchestrator and runs
every request as an operation, one at a time, `server` is the FastAPI app
served by uvicorn on the socket, `client` the stdlib client the CLI uses.
"""

SOCKET_NAME = "evesnap.sock"
