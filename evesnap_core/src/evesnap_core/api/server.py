"""The agent's HTTP+JSON API (FastAPI, so that the OpenAPI document comes from
the pydantic models in `models`), served by uvicorn on a Unix socket of mode
0600 (0660 with the group named by ``--api-group``).

Every resource maps to the `evesnap` command the CLI would run, carried out as
an operation (`service`): reads answer once it finished (200, or the command's
error with 400/404/500), writes answer 202 with the operation to follow
(GET /v1/operations/{id}?wait=S, DELETE to cancel), GET /v1/events streams
operations and app state changes as NDJSON.
"""

from __future__ import annotations

import contextlib
import grp
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import JSONResponse, StreamingResponse

from evesnap_core import __version__
from evesnap_core.api.models import (
    AgentInfo,
    ApiError,
    CloneCreate,
    CommandRequest,
    CommandResult,
    Operation,
    PolicyRunCreate,
    SnapshotCreate,
    SnapshotNode,
    SnapshotRename,
    SnapshotRollback,
)
from evesnap_core.api.service import Service

NOT_THROUGH_THE_AGENT = {"agent", "monitor", "conformance"}
READ_WAIT = 300.0

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ApiError, "description": "invalid request (the command's exit 2)"},
    404: {"model": ApiError, "description": "no such app, snapshot or operation"},
    500: {"model": ApiError, "description": "the operation failed (the command's exit 1)"},
}


def make_app(service: Service | None, socket: Path | None = None) -> FastAPI:
    """The API; `service` None builds it for the OpenAPI document only."""
    app = FastAPI(
        title="evesnap agent API",
        version="1",
        description="Local API of the evesnap agent on <runtime dir>/evesnap.sock (docs/operator-guide.md).",
    )

    def svc() -> Service:
        assert service is not None
        return service

    def read(argv: list[str], as_json: bool = True) -> Any:
        op = svc().command(CommandRequest(argv=[*argv, "--json"] if as_json else argv, cwd="/"))
        done = svc().wait(op.id, READ_WAIT)
        assert done is not None and done.result is not None
        return answer(done.result)

    def answer(result: CommandResult) -> Any:
        if result.exit_code == 0:
            return result.data if result.data is not None else {"output": result.stdout}
        line = (result.stderr.strip().splitlines() or ["failed"])[-1]
        status = 404 if ("no app" in line or "no snapshot" in line or "unknown" in line) else 400
        raise HTTPException(status if result.exit_code == 2 else 500, detail=line)

    def write(argv: list[str]) -> JSONResponse:
        op = svc().command(CommandRequest(argv=argv, cwd="/"))
        return JSONResponse(op.model_dump(mode="json"), status_code=202)

    @app.get("/v1/agent", response_model=AgentInfo)
    def agent() -> AgentInfo:
        return AgentInfo(
            persist=str(svc().persist.resolve()), pid=os.getpid(), version=__version__, socket=str(socket)
        )

    # ------------------------------------------------------------ operations

    @app.post("/v1/operations", response_model=Operation, status_code=202, responses=ERRORS)
    def run_command(request: CommandRequest) -> Operation:
        """Run an `evesnap` command line inside the agent (what the CLI does)."""
        words = [a for a in request.argv if not a.startswith("-")]
        if words and words[0] in NOT_THROUGH_THE_AGENT:
            raise HTTPException(400, detail=f"'{words[0]}' does not run through the agent")
        return svc().command(request)

    @app.get("/v1/operations", response_model=list[Operation])
    def operations() -> list[Operation]:
        return svc().list()

    @app.get("/v1/operations/{op_id}", response_model=Operation, responses=ERRORS)
    def operation(op_id: str, wait: float = Query(0.0, ge=0, le=60)) -> Operation:
        """The operation; with `wait`, once it finished or after `wait` seconds."""
        op = svc().wait(op_id, wait) if wait else svc().get(op_id)
        if op is None:
            raise HTTPException(404, detail=f"no operation {op_id}")
        return op

    @app.delete("/v1/operations/{op_id}", response_model=Operation, responses=ERRORS)
    def cancel(op_id: str) -> Operation:
        """Cancel a queued operation; a running one finishes its step first."""
        op = svc().cancel(op_id)
        if op is None:
            raise HTTPException(404, detail=f"no operation {op_id}")
        return op

    @app.get("/v1/events")
    def events(after: int = 0) -> StreamingResponse:
        """Operations and app state changes as they happen, one JSON object a line."""

        def stream() -> Iterator[bytes]:
            seen = after
            while True:
                batch = svc().events_after(seen, 15.0)
                if not batch:
                    yield b"\n"  # keep-alive
                for event in batch:
                    seen = event.seq
                    yield event.model_dump_json().encode() + b"\n"

        return StreamingResponse(stream(), media_type="application/x-ndjson")

    # ------------------------------------------------------------ resources

    @app.get("/v1/reports", responses=ERRORS)
    def reports() -> Any:
        """Apps, volumes and snapshots (ZInfo, proto3 JSON) with backend details."""
        return read(["status"])

    @app.get("/v1/apps", responses=ERRORS)
    def apps() -> Any:
        return read(["status"])["apps"]

    @app.get("/v1/apps/{app}", responses=ERRORS)
    def app_(app: str) -> Any:
        return read(["status", app])

    @app.get("/v1/volumes", responses=ERRORS)
    def volumes() -> Any:
        return read(["status"])["volumes"]

    @app.get("/v1/plugins", responses=ERRORS)
    def plugins() -> Any:
        return read(["plugins"])

    @app.get("/v1/apps/{app}/snapshots", responses={**ERRORS, 200: {"model": list[SnapshotNode]}})
    def snapshots(app: str) -> Any:
        """The app's snapshots as a tree (parents first)."""
        return read(["snapshot", "list", app])

    @app.get("/v1/apps/{app}/snapshots/{snapshot}", responses=ERRORS)
    def describe(app: str, snapshot: str) -> Any:
        return read(["snapshot", "describe", app, snapshot], as_json=False)

    @app.post("/v1/apps/{app}/snapshots", response_model=Operation, status_code=202)
    def create(app: str, body: SnapshotCreate) -> JSONResponse:
        argv = ["snapshot", "create", app, "--json", "--name", body.name]
        return write([*argv, "--id", body.id] if body.id else argv)

    @app.patch("/v1/apps/{app}/snapshots/{snapshot}", responses=ERRORS)
    def rename(app: str, snapshot: str, body: SnapshotRename) -> Any:
        return read(["snapshot", "rename", app, snapshot, body.name], as_json=False)

    @app.post("/v1/apps/{app}/snapshots/{snapshot}/rollback", response_model=Operation, status_code=202)
    def rollback(app: str, snapshot: str, body: SnapshotRollback) -> JSONResponse:
        argv = ["snapshot", "rollback", app, snapshot]
        return write([*argv, "--destroy-newer"] if body.destroy_newer else argv)

    @app.delete("/v1/apps/{app}/snapshots/{snapshot}", response_model=Operation, status_code=202)
    def delete(app: str, snapshot: str, scope: str = "snapshot", force: bool = False) -> JSONResponse:
        argv = ["snapshot", "delete", app, snapshot, "--json"]
        if scope != "snapshot":
            argv.append(f"--{scope}")
        return write([*argv, "--force"] if force else argv)

    @app.post("/v1/apps/{app}/snapshots/{snapshot}/open", responses=ERRORS)
    def open_(app: str, snapshot: str) -> Any:
        """Expose the snapshot's volumes read-only (paths or NBD sockets)."""
        return read(["snapshot", "open", app, snapshot])

    @app.post("/v1/apps/{app}/snapshots/{snapshot}/close", responses=ERRORS)
    def close(app: str, snapshot: str) -> Any:
        return read(["snapshot", "close", app, snapshot], as_json=False)

    @app.post("/v1/apps/{app}/snapshots/{snapshot}/clones", response_model=Operation, status_code=202)
    def clone(app: str, snapshot: str, body: CloneCreate) -> JSONResponse:
        if body.kind == "volumes":
            return write(["clone", "volumes", app, snapshot, "--json"])
        argv = ["clone", "app", app, snapshot, "--name", body.name or f"clone of {app}", "--json"]
        return write(argv if body.start else [*argv, "--no-start"])

    @app.delete("/v1/clones/{target}", response_model=Operation, status_code=202)
    def clone_delete(target: str) -> JSONResponse:
        return write(["clone", "delete", target])

    @app.post("/v1/policy-runs", response_model=Operation, status_code=202)
    def policy_run(body: PolicyRunCreate) -> JSONResponse:
        argv = ["policy", "run", body.policy, "--json"]
        return write([*argv, "--dry-run"] if body.dry_run else argv)

    return app


class ApiServer:
    """uvicorn on the Unix socket, in a thread of the agent."""

    def __init__(self, service: Service, socket: Path, group: str | None = None) -> None:
        import uvicorn

        self.socket = socket
        self.group = group
        with contextlib.suppress(FileNotFoundError):
            socket.unlink()
        config = uvicorn.Config(
            make_app(service, socket), uds=str(socket), log_level="warning", lifespan="off", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="evesnap-api", daemon=True)

    def start(self, timeout: float = 30.0) -> None:
        old = os.umask(0o177)  # the socket is born 0600: nobody else ever sees it open
        try:
            self.thread.start()
            deadline = time.monotonic() + timeout
            while not self.server.started:
                if not self.thread.is_alive() or time.monotonic() > deadline:
                    raise OSError(f"the API did not start on {self.socket}")
                time.sleep(0.01)
        finally:
            os.umask(old)
        if self.group:
            os.chown(self.socket, -1, grp.getgrnam(self.group).gr_gid)
            self.socket.chmod(0o660)
        else:
            self.socket.chmod(0o600)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
