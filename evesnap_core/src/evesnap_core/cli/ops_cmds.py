"""The operator's commands: apply, status, agent."""

from __future__ import annotations

import contextlib
import hashlib
import signal
import time
from pathlib import Path
from typing import Any

import click

from evesnap_core.cli.common import EXIT_FAILED, EXIT_INVALID, session_or_fail
from evesnap_core.cli.controller_reports import device_id, write_reports
from evesnap_core.cli.interrupt import StopFlag
from evesnap_core.cli.output import fail, one_line
from evesnap_core.cli.reports_view import show
from evesnap_core.errors import ConfigError, EvesnapError
from evesnap_core.model.binary import BINARY_SUFFIXES, is_binary
from evesnap_core.model.loader import LoadedConfig, load_device_config
from evesnap_core.orchestrator.reports import Reports

STRICT_HELP = (
    "Refuse a config with an unknown field (a typo such as 'activte'): exit 2, nothing changed. "
    "Without it each unknown field is a warning."
)


def read_config_file(path: Path, strict: bool) -> LoadedConfig:
    """A config file as proto3 JSON or binary EdgeDevConfig (by suffix, else content)."""
    data = path.read_bytes()
    return load_device_config(data, strict=strict, binary=is_binary(path, data))


def _read_config(path: Path, strict: bool) -> LoadedConfig:
    try:
        return read_config_file(path, strict)
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}", "check the path", EXIT_INVALID)
        raise
    except ConfigError as exc:
        fail(f"{path}: {exc}", "fix the config file and run again", EXIT_INVALID)
        raise


def _exit_code(reports: Reports) -> int:
    errors = any(p.severity == 3 for a in reports.apps for p in a.app_err)  # SEVERITY_ERROR
    errors = errors or any(s.snap_err is not None for a in reports.apps for s in a.snapshots)
    errors = errors or any(v.volume_err is not None for v in reports.volumes)
    return EXIT_FAILED if errors else 0


@click.command()
@click.argument("config", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the reports as proto3 JSON.")
@click.option("--strict", is_flag=True, help=STRICT_HELP)
@click.pass_obj
def apply(obj: Any, config: Path, as_json: bool, strict: bool) -> None:
    """Reconcile once to the device config in CONFIG (the controller's proto3 JSON
    or binary EdgeDevConfig, told by the suffix .json / .pb .bin .binpb, else by
    content: apps, volumes, content trees whose URL may be a local file) and
    print the reports.

    Each unknown field (and unknown enum number) is one warning line on stderr,
    naming its path and the nearest known name, and a warning on the app.

    Exit code 0 when everything applied, 1 when an app, volume or snapshot
    reports an error, 2 when CONFIG is invalid or, with --strict, has an
    unknown field (nothing is changed then).
    """
    loaded = _read_config(config, strict)
    for line in loaded.lines():
        click.echo(f"evesnap: warning: {config.name}: {line}", err=True)
    session = session_or_fail(obj, base_dir=config.resolve().parent, as_json=as_json)
    reports = session.orchestrator.reconcile(loaded.device, loaded.per_app())
    show(session.orchestrator, reports, as_json)
    for problem in session.orchestrator.problems:  # state not written (a full disk): one line each
        click.echo(f"evesnap: error: {one_line(problem)}", err=True)
    raise SystemExit(EXIT_FAILED if session.orchestrator.problems else _exit_code(reports))


@click.command()
@click.argument("app", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the ZInfo reports as proto3 JSON.")
@click.pass_obj
def status(obj: Any, app: str | None, as_json: bool) -> None:
    """Show apps, their volumes (backend, location, sizes) and snapshots."""
    session = session_or_fail(obj, write=False)
    reports = session.orchestrator.reports()
    if app is not None:
        try:
            wanted = str(session.app_uuid(app))
        except ConfigError as exc:
            fail(str(exc), "run 'evesnap status' to list apps", EXIT_INVALID)
        keep = [a for a in reports.apps if a.app_id == wanted]
        refs = {r for a in keep for r in a.volume_refs}
        reports = Reports(apps=keep, volumes=[v for v in reports.volumes if v.uuid in refs])
    show(session.orchestrator, reports, as_json)


@click.command()
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The device config file to follow.",
)
@click.option(
    "--reports",
    "reports_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Where to write the controller's reports, a JSON array of eve-api ZInfoMsg "
    "(default: <persist>/reports.json).",
)
@click.option(
    "--reports-format",
    type=click.Choice(["auto", "json", "binary"]),
    default="auto",
    show_default=True,
    help="The reports file as a JSON array of ZInfoMsg, or binary length-delimited ZInfoMsg; "
    "auto: binary when its name ends in .pb, .bin or .binpb.",
)
@click.option("--interval", default=2.0, show_default=True, help="Seconds between checks of the config.")
@click.option(
    "--policy",
    "policy_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="A local policy file (schedules, retention; docs/policies.md), run once a minute.",
)
@click.option(
    "--resync",
    default=30.0,
    show_default=True,
    help="Seconds after which the same config is reconciled again (an app whose VM died is "
    "reported and restarted, a failed deletion retried); 0: only when CONFIG changes.",
)
@click.option(
    "--api/--no-api",
    default=True,
    show_default=True,
    help="Serve the local API on <runtime dir>/evesnap.sock (the CLI then goes through it).",
)
@click.option("--api-group", default=None, help="Group that may use the API socket (mode 0660; else 0600).")
@click.option("--strict", is_flag=True, help=STRICT_HELP.replace("exit 2, nothing changed", "ignored"))
@click.pass_obj
def agent(
    obj: Any,
    config_path: Path,
    reports_path: Path | None,
    reports_format: str,
    interval: float,
    policy_path: Path | None,
    resync: float,
    api: bool,
    api_group: str | None,
    strict: bool,
) -> None:
    """Run until SIGTERM: reconcile whenever CONFIG changes (its content, by
    sha256: a copy keeping size and mtime is seen too) and every --resync
    seconds, write the reports.

    On SIGTERM (SIGINT) the step in flight finishes (or stays journalled) and
    the agent exits 143 (130) after one line. An invalid config (with
    --strict, one with an unknown field) is reported and the previous one stays
    applied; a missing one is waited for, said once. Each unknown field is a
    warning line in the log (once per change of CONFIG) and on the app.
    """
    stopping = StopFlag()
    stopping.install()  # first: a stop during start-up is clean too
    config_path = config_path.absolute()  # a command run for a client changes the folder for a while
    base_dir = config_path.resolve().parent
    session = session_or_fail(obj, base_dir=base_dir)
    reports_path = (reports_path or obj.persist / "reports.json").absolute()
    binary = reports_format == "binary" or (
        reports_format == "auto" and reports_path.suffix.lower() in BINARY_SUFFIXES
    )
    try:
        service, server = _serve(obj.persist, session, api_group) if api else (None, None)
    except ConfigError as exc:  # a runtime folder another user could change
        fail(str(exc), "check the runtime folder", EXIT_INVALID)
        raise
    whole_device = service.whole_device if service is not None else contextlib.nullcontext
    seen: str | None = None  # the sha256 of the config last reconciled
    last = time.monotonic()
    policy_tick = None
    if policy_path is not None:
        from evesnap_core.cli.policy_cmd import agent_policy_tick

        policy_tick = agent_policy_tick(policy_path, session)
    waiting_said = False
    said: set[str] = set()  # a failure repeated every interval is said once, until it changes
    pending = False  # the last pass could not write everything (a full disk): run again
    while not stopping:
        try:
            raw = config_path.read_bytes()
            stamp: str | None = hashlib.sha256(raw).hexdigest()  # by content: cp -p keeps size and mtime
        except OSError as exc:
            stamp = None
            if not waiting_said:  # once, not every interval
                click.echo(f"evesnap agent: waiting for {config_path} ({exc.strerror})", err=True)
                waiting_said = True
        else:
            waiting_said = False
        due = pending or (resync > 0 and time.monotonic() - last >= resync)
        if due and stamp == seen and service is not None and service.lanes.running():
            # a resync waits for a quiet moment, not to hold every app up behind a long
            # request; never longer than four of its intervals (at least a minute)
            due = pending or time.monotonic() - last >= max(4 * resync, 60.0)
        if stamp is not None and (stamp != seen or due):
            changed = stamp != seen
            seen, last = stamp, time.monotonic()
            try:
                loaded = load_device_config(raw, strict=strict, binary=is_binary(config_path, raw))
            except ConfigError as exc:
                click.echo(f"evesnap agent: ignoring invalid {config_path}: {exc}", err=True)
                pending = False
            else:
                if changed:  # said once per change, not every resync
                    for line in loaded.lines():
                        click.echo(f"evesnap agent: warning: {config_path.name}: {line}", err=True)
                with whole_device():  # local requests queue behind the reconcile, and it behind them
                    session.orchestrator.wiring.resolver.base_dir = base_dir
                    failures = _agent_pass(session, loaded, reports_path, obj.persist, binary)
                    if service is not None:
                        service.note_app_states()
                pending = bool(failures)
                for line in sorted(set(failures) - said):
                    click.echo(f"evesnap agent: {one_line(line)}", err=True)
                if said and not failures:
                    click.echo("evesnap agent: state and reports written again", err=True)
                said = set(failures)
        if policy_tick is not None:
            with whole_device():
                if policy_tick():
                    try:
                        _write_controller_reports(session.orchestrator, reports_path, obj.persist, binary)
                    except (EvesnapError, OSError) as exc:
                        pending = True
                        click.echo(f"evesnap agent: cannot write the reports: {exc}", err=True)
        deadline = time.monotonic() + interval
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.05)
    if server is not None and service is not None:
        server.stop()
        service.stop()  # the requests in flight finish, the queued ones are cancelled
    name = signal.Signals(stopping.signum or signal.SIGTERM).name
    click.echo(f"evesnap agent: stopped by {name}", err=True)
    raise SystemExit(stopping.exit_code)


def _agent_pass(
    session: Any, loaded: LoadedConfig, reports_path: Path, persist: Path, binary: bool
) -> list[str]:
    """One reconcile and its reports; what could not be written, one line each.

    A full disk (or any OSError on the store) never ends the agent: the apps
    are reconciled as far as they can be, the reports are written when there is
    room, and the caller runs the pass again at its next interval."""
    orchestrator = session.orchestrator
    try:
        orchestrator.reconcile(loaded.device, loaded.per_app())
        failures = list(orchestrator.problems)
    except (EvesnapError, OSError) as exc:  # reconcile guards its own steps; this is the last net
        failures = [f"reconcile failed: {exc}"]
    try:
        _write_controller_reports(orchestrator, reports_path, persist, binary)
    except (EvesnapError, OSError) as exc:
        failures.append(f"cannot write the reports to {reports_path}: {exc}")
    return failures


def _write_controller_reports(orchestrator: Any, reports_path: Path, persist: Path, binary: bool) -> None:
    """The controller's ZInfoMsg reports, JSON or binary (clones are the device's own: left out)."""
    write_reports(orchestrator, reports_path, device_id(persist, orchestrator.device), binary)


def _serve(persist: Path, session: Any, group: str | None) -> tuple[Any, Any]:
    """The local API on <runtime dir>/evesnap.sock, sharing this agent's session."""
    from evesnap_core.api import SOCKET_NAME
    from evesnap_core.api.server import ApiServer
    from evesnap_core.api.service import Service
    from evesnap_core.durable import ensure_dir
    from evesnap_core.settings import RUNTIME_DIR_ENV, default_runtime_dir
    from evesnap_core.state.lock import check_folder

    runtime_dir = ensure_dir(default_runtime_dir())
    check_folder(runtime_dir, RUNTIME_DIR_ENV)  # the API socket: only its owner may change the folder
    service = Service(persist, session)
    server = ApiServer(service, runtime_dir / SOCKET_NAME, group)
    server.start()
    click.echo(f"evesnap agent: API on {server.socket}", err=True)
    return service, server
