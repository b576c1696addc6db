"""What crosses the agent's socket: requests, operations, events (pydantic v2)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

OperationState = Literal["queued", "running", "done", "failed", "cancelled"]


class AgentInfo(BaseModel):
    """Who answers on the socket: the CLI goes through an agent only on its own persist folder."""

    persist: str
    pid: int
    version: str
    socket: str


class Progress(BaseModel):
    done: int
    total: int


class CommandRequest(BaseModel):
    """An `evesnap` command line run inside the agent (what the CLI sends)."""

    argv: list[str] = Field(description="The arguments after 'evesnap'.")
    cwd: str = Field(description="The caller's working folder (relative paths).")
    stdin: str | None = Field(default=None, description="The caller's standard input, for /dev/stdin.")


class CommandResult(BaseModel):
    exit_code: int
    stdout: str
    stderr: str
    data: Any = Field(default=None, description="stdout parsed as JSON, when it is JSON.")


class Operation(BaseModel):
    """A request the agent carries out, one at a time, in order (queued, never refused)."""

    id: str
    kind: str
    description: str
    state: OperationState
    created: datetime
    started: datetime | None = None
    finished: datetime | None = None
    progress: Progress | None = None
    result: CommandResult | None = None
    cancel_requested: bool = False


class Event(BaseModel):
    """One line of the event stream (`evesnap monitor`)."""

    seq: int
    time: datetime
    kind: Literal["operation", "app"]
    operation: Operation | None = None
    app: str | None = None
    app_name: str | None = None
    state: str | None = None


class SnapshotNode(BaseModel):
    """One snapshot of ``GET /v1/apps/{app}/snapshots`` (the tree, parents first)."""

    id: str
    configId: str  # noqa: N815 (the report's names)
    configVersion: str  # noqa: N815
    type: str
    parent: str | None
    depth: int
    current: bool
    name: str
    state: str
    origin: str
    consistency: Literal["crash-consistent", "filesystem-consistent"] = Field(
        description="filesystem-consistent: taken with the guest's filesystems frozen by its agent; "
        "crash-consistent: what a power cut would have left."
    )
    consistencyDetail: str = Field(  # noqa: N815
        default="", description="How long the guest was frozen, or why it was not."
    )
    createTime: str | None = None  # noqa: N815
    snapErr: dict[str, str] | None = None  # noqa: N815


class SnapshotCreate(BaseModel):
    id: str | None = None
    name: str = ""


class SnapshotRename(BaseModel):
    name: str


class SnapshotRollback(BaseModel):
    destroy_newer: bool = False


class CloneCreate(BaseModel):
    kind: Literal["app", "volumes"] = "app"
    name: str = ""
    start: bool = True


class PolicyRunCreate(BaseModel):
    policy: str = Field(description="Path of the policy file, as the agent sees it.")
    dry_run: bool = False


class ApiError(BaseModel):
    detail: str
