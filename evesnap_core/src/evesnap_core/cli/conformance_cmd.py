"""`evesnap conformance NAME`: prove that an installed backend behaves."""

from __future__ import annotations

import click

from evesnap_core.cli.output import print_json, print_table


@click.command()
@click.argument("backend")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("-k", "keyword", default=None, help="Only cases matching this pytest -k expression.")
def conformance(backend: str, as_json: bool, keyword: str | None) -> None:
    """Run the conformance suite against installed backend BACKEND.

    The backend's distribution registers a harness under the entry-point group
    evesnap.conformance. Prints each case by capability: pass, FAIL (with the
    reason), or not declared. Exit code 0 when cases passed and none failed, 1
    when one failed, 2 when the suite could not run or every case was skipped.
    """
    import importlib.util

    if importlib.util.find_spec("pytest") is None:
        click.echo(
            "evesnap: error: the conformance suite needs pytest, which is not installed "
            "(pip install 'evesnap-core[conformance]')",
            err=True,
        )
        raise SystemExit(2)
    from evesnap_core.testing.conformance.runner import SuiteCannotRun, run_suite

    extra = ["-k", keyword] if keyword else []
    try:
        results = run_suite(backend, extra, quiet=as_json)
    except SuiteCannotRun as exc:
        click.echo(f"evesnap: error: {exc}", err=True)
        raise SystemExit(2) from None
    if not results:
        click.echo(f"evesnap: error: the suite ran no case for {backend!r} (see the output above)", err=True)
        raise SystemExit(2)
    results.sort(key=lambda r: (r.capability, r.case))
    if as_json:
        print_json([r.__dict__ for r in results])
    else:
        print_table(
            ["CAPABILITY", "CASE", "RESULT", "REASON"],
            [[r.capability, r.case, r.outcome, r.reason] for r in results],
        )
        counts: dict[str, int] = {}
        for r in results:
            counts[r.outcome] = counts.get(r.outcome, 0) + 1
        click.echo("\n" + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    if any(r.outcome == "FAIL" for r in results):
        raise SystemExit(1)
    if not any(r.outcome == "pass" for r in results):
        click.echo(
            f"evesnap: error: no case passed for {backend!r}: every one was skipped "
            "(is the backend available here? see 'evesnap plugins')",
            err=True,
        )
        raise SystemExit(2)
