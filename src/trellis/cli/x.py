"""`trellis x ...`: experimental commands, as `istioctl x`. `x authz check NAME` shows the
AuthorizationPolicies on a workload and decides a described request with the reference
evaluator (trellis.policy.evaluate)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from trellis.api.kinds import parse_resource
from trellis.cli import workload_entry
from trellis.cli.common import StateDirOption, layout_for, split_name, trellisd
from trellis.cli.output import Format, console, print_items
from trellis.errors import NotFound, TrellisError
from trellis.model.registry import Workload
from trellis.policy.evaluate import AuthzRequest
from trellis.policy.explain import AuthzReport, authz_report
from trellis.registry.local import workload_from_record

app = typer.Typer(help="Experimental commands.", no_args_is_help=True)
authz = typer.Typer(help="Authorization policies.", no_args_is_help=True)
app.add_typer(authz, name="authz")
app.add_typer(workload_entry.app, name="workload-entry")


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            raise TrellisError(f"{what} {value!r}: write KEY=VALUE")
        out[key.lower() if what == "--header" else key] = rest
    return out


@authz.command("check")
def check(
    name: str = typer.Argument(..., help="Workload name (or NAME.NAMESPACE)"),
    namespace: str | None = typer.Option(None, "-n", "--namespace"),
    method: str | None = typer.Option(None, "--method", help="Describe a request: its method"),
    path: str = typer.Option("/", "--path"),
    host: str = typer.Option("", "--host"),
    port: int = typer.Option(0, "--port", help="Destination (workload) port"),
    header: list[str] = typer.Option([], "--header", help="KEY=VALUE, repeatable"),
    source_principal: str | None = typer.Option(
        None, "--source-principal", help="e.g. cluster.local/ns/default/sa/bookinfo-reviews"
    ),
    source_ip: str | None = typer.Option(None, "--source-ip"),
    request_principal: str | None = typer.Option(None, "--request-principal", help="ISS/SUB"),
    claim: list[str] = typer.Option([], "--claim", help="KEY=VALUE JWT claim, repeatable"),
    tcp: bool = typer.Option(False, "--tcp", help="Describe a TCP connection instead"),
    output: Format = typer.Option(Format.table, "-o", "--output"),
    state_dir: Path | None = StateDirOption,
) -> None:
    """Which policies apply to a workload, and what they decide for a described request."""
    name, ns = split_name(name, namespace)
    api = trellisd(layout_for(state_dir))
    workload = _workload(api.call("GET", "/workloads")["items"], name, ns)
    resources = [
        parse_resource(doc)
        for kind in ("AuthorizationPolicy", "RequestAuthentication")
        for doc in api.call("GET", f"/resources?kind={kind}")["items"]
    ]
    described = method is not None or tcp or any((header, source_principal, source_ip, claim))
    request = None
    if described:
        request = AuthzRequest(
            method=method or "GET",
            path=path,
            host=host,
            port=port,
            headers=_pairs(header, "--header"),
            source_ip=source_ip,
            source_principal=source_principal,
            request_principal=request_principal,
            claims=_pairs(claim, "--claim"),
            tcp=tcp,
        )
    report = authz_report(resources, namespace=ns, labels=workload.labels, request=request)
    _print(report, output)


def _workload(items: list[dict[str, Any]], name: str, namespace: str) -> Workload:
    for item in items:
        if item.get("name") == name and item.get("namespace") == namespace:
            return workload_from_record(item)
    raise NotFound(f"workload {namespace}/{name} not found; see `trellis ps`")


def _print(report: AuthzReport, output: Format) -> None:
    if output is not Format.table:
        print(json.dumps(report.as_json(), indent=2))
        return
    rows = report.as_json()["authorizationPolicies"]
    print_items(
        rows,
        output,
        [("NAMESPACE", "namespace"), ("NAME", "name"), ("ACTION", "action"), ("RULES", "rules")],
    )
    for ns, name, issuers in report.request_authentications:
        console.print(f"RequestAuthentication {ns}/{name}: issuers {', '.join(issuers)}")
    decision = report.decision
    if decision is not None:
        verdict = "ALLOWED" if decision.allowed else "DENIED"
        by = f" by {decision.rule}" if decision.rule else ""
        console.print(f"{verdict}{by}: {decision.reason}", markup=False)
