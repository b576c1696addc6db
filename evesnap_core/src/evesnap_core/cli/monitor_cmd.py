"""`evesnap monitor`: the agent's event stream -- operations and app state
changes as they happen -- until Ctrl-C."""

from __future__ import annotations

import json
from typing import Any

import click

from evesnap_core.cli.common import EXIT_INVALID
from evesnap_core.cli.output import fail, one_line


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON event a line.")
@click.option("--after", default=0, help="Also the kept events after this sequence number (0: all kept).")
@click.pass_obj
def monitor(obj: Any, as_json: bool, after: int) -> None:
    """Follow the agent's operations and app state changes (needs a running agent)."""
    from evesnap_launch.client import connect

    client = connect(obj.persist)
    if client is None:
        fail(f"no agent serves {obj.persist}", "start it: evesnap agent --config FILE", EXIT_INVALID)
        return
    client.conn.timeout = None
    client.conn.request("GET", f"/v1/events?after={after}")
    response = client.conn.getresponse()
    while True:
        line = response.readline()
        if not line:
            fail("the agent stopped", "", 1)
        if not line.strip():
            continue
        if as_json:
            click.echo(line.decode().rstrip())
            continue
        event = json.loads(line)
        when = event["time"][11:19]
        if event["kind"] == "app":
            click.echo(f"{when} app {one_line(event.get('app_name') or event['app'])} {event['state']}")
        else:
            op = event["operation"]
            code = f" exit {op['result']['exit_code']}" if op.get("result") else ""
            click.echo(f"{when} operation {op['id'][:8]} {one_line(op['description'])} {op['state']}{code}")
