"""`trellis proxy-status | proxy-config`: what each Envoy has, as istioctl shows it."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any

import typer

from trellis.cli.common import StateDirOption, layout_for, split_name, trellisd
from trellis.cli.output import Format, print_items


class ConfigType(enum.StrEnum):
    listeners = "listeners"
    routes = "routes"
    clusters = "clusters"
    endpoints = "endpoints"
    secret = "secret"


def _sync(entry: dict[str, Any] | None) -> str:
    if not entry or not entry.get("sent"):
        return "NOT SENT"
    if entry.get("nacked"):
        return f"NACKED ({entry.get('error', '')[:80]})"
    return "SYNCED" if entry.get("acked") == entry.get("sent") else "STALE"


def proxy_status(
    output: Format = typer.Option(Format.table, "-o", "--output"),
    state_dir: Path | None = StateDirOption,
) -> None:
    """Every connected proxy and whether it has ACKed the latest config of each type."""
    proxies = trellisd(layout_for(state_dir)).call("GET", "/proxy-status")["proxies"]
    rows = []
    for p in proxies:
        row = {"name": p["proxy"], "type": p["type"], "ip": p["ip"]}
        for t in ("CDS", "LDS", "EDS", "RDS"):
            row[t] = _sync(p["xds"].get(t))
        row["version"] = max((e.get("acked") or "" for e in p["xds"].values()), default="")
        rows.append(row)
    print_items(
        rows,
        output,
        [
            ("NAME", "name"),
            ("TYPE", "type"),
            ("CDS", "CDS"),
            ("LDS", "LDS"),
            ("EDS", "EDS"),
            ("RDS", "RDS"),
            ("VERSION", "version"),
        ],
        raw=proxies,
    )


def proxy_config(
    config_type: ConfigType = typer.Argument(
        ..., help="listeners | routes | clusters | endpoints | secret"
    ),
    name: str = typer.Argument(..., help="Proxy: NAME[.NAMESPACE]"),
    namespace: str | None = typer.Option(None, "-n", "--namespace"),
    output: Format = typer.Option(Format.table, "-o", "--output"),
    state_dir: Path | None = StateDirOption,
) -> None:
    """The Envoy config trellisd serves to one proxy."""
    name, namespace = split_name(name, namespace)
    body = trellisd(layout_for(state_dir)).call(
        "GET", f"/proxy-config/{namespace}/{name}/{config_type.value}"
    )
    if config_type is ConfigType.secret:
        print_items(_secret_rows(body), output, _SECRET_COLUMNS, raw=[body])
        return
    items = body["items"]
    rows = [_summary(config_type, i) for i in items]
    print_items(rows, output, _COLUMNS[config_type], raw=items)


_SECRET_COLUMNS = [
    ("NAME", "name"),
    ("IDENTITY", "identity"),
    ("SERIAL", "serial"),
    ("NOT BEFORE", "notBefore"),
    ("NOT AFTER", "notAfter"),
]


def _secret_rows(body: dict[str, Any]) -> list[dict[str, Any]]:
    """`default`: the proxy's SPIFFE ID; `ROOTCA`: one row per trusted root (istioctl's view)."""
    rows: list[dict[str, Any]] = []
    for secret in body.get("secrets", []):
        if "spiffeId" in secret:
            rows.append({**secret, "identity": secret["spiffeId"]})
        for root in secret.get("roots", []):
            rows.append({"name": secret["name"], "identity": root["subject"], **root})
    return rows


_COLUMNS = {
    ConfigType.listeners: [
        ("NAME", "name"),
        ("ADDRESS", "address"),
        ("PORT", "port"),
        ("CHAINS", "chains"),
    ],
    ConfigType.routes: [("NAME", "name"), ("VIRTUAL HOSTS", "vhosts"), ("DOMAINS", "domains")],
    ConfigType.clusters: [("NAME", "name"), ("TYPE", "type"), ("LB", "lb")],
    ConfigType.endpoints: [("CLUSTER", "name"), ("ENDPOINTS", "endpoints")],
}


def _summary(kind: ConfigType, item: dict[str, Any]) -> dict[str, Any]:
    if kind is ConfigType.listeners:
        addr = item.get("address", {}).get("socketAddress", {})
        return {
            "name": item.get("name"),
            "address": addr.get("address"),
            "port": addr.get("portValue"),
            "chains": len(item.get("filterChains", [])),
        }
    if kind is ConfigType.routes:
        vhosts = item.get("virtualHosts", [])
        domains = [d for v in vhosts for d in v.get("domains", [])][:6]
        return {"name": item.get("name"), "vhosts": len(vhosts), "domains": domains}
    if kind is ConfigType.clusters:
        return {
            "name": item.get("name"),
            "type": item.get("type", "EDS"),
            "lb": item.get("lbPolicy", ""),
        }
    eps = [
        f"{e['endpoint']['address']['socketAddress']['address']}:{e['endpoint']['address']['socketAddress']['portValue']}"
        for group in item.get("endpoints", [])
        for e in group.get("lbEndpoints", [])
    ]
    return {"name": item.get("clusterName"), "endpoints": eps}
