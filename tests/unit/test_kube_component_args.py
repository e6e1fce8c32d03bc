"""The installed containers' command lines are parsed by the real commands' parsers.

A rename or removal of a flag in `trellisd`, `trellis-agent`, `trellis console` or
`trellis tracing` must break here, not in a cluster where the pod crash-loops on
"no such option". Nothing is run: only the parsers see the rendered args.
"""

from __future__ import annotations

import argparse
import importlib
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.core

from trellis.agent.main import build_parser as agent_parser
from trellis.cli.main import app as trellis_app
from trellis.console.auth import Role
from trellis.console.run import allowed_roles
from trellis.controlplane.app import build_parser as trellisd_parser
from trellis.kube.manifests import render_objects
from trellis.kube.overlay import build_spec
from trellis.kube.spec import InstallSpec

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
ENTRY_POINTS = {
    "trellis": "trellis.cli.main:main",
    "trellisd": "trellis.controlplane.app:main",
    "trellis-agent": "trellis.agent.main:main",
}


def _container(spec: InstallSpec, deployment: str) -> dict[str, Any]:
    for obj in render_objects(spec):
        if obj["kind"] == "Deployment" and obj["metadata"]["name"] == deployment:
            container: dict[str, Any] = obj["spec"]["template"]["spec"]["containers"][0]
            return container
    raise AssertionError(f"no Deployment {deployment}")


def _check_entry_point(command: list[str]) -> None:
    """The container's program is the script pyproject.toml installs under that name, and
    it is the one whose parser the test uses."""
    scripts = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]
    assert scripts[command[0]] == ENTRY_POINTS[command[0]]
    module, _, function = scripts[command[0]].partition(":")
    assert callable(getattr(importlib.import_module(module), function))


def _trellis_subcommand(command: list[str], args: list[str]) -> Any:
    """Resolve `trellis SUB` in the real CLI and parse `args` with it, without running it."""
    _check_entry_point(command)
    root = typer.main.get_command(trellis_app)
    assert isinstance(root, typer.core.TyperGroup) and len(command) == 2
    sub = root.commands[command[1]]
    ctx = sub.make_context(" ".join(command), list(args))
    assert ctx.args == []  # nothing left over for a subcommand or an argument
    return ctx


def _agent_args(container: dict[str, Any]) -> argparse.Namespace:
    _check_entry_point(container["command"])
    parser = agent_parser()
    parser.allow_abbrev = False  # a renamed flag must not still match as a prefix
    parsed = parser.parse_args(container["args"])
    assert parsed.app == []
    return parsed


def test_console_args_parse_with_trellis_console() -> None:
    spec = build_spec(
        profile="demo",
        sets=[
            "values.console.rbac.allowedRoles[0]=view",
            "values.console.rbac.allowedRoles[1]=edit",
        ],
    )
    container = _container(spec, "kiali")
    ctx = _trellis_subcommand(container["command"], container["args"])
    assert ctx.params["address"] == "0.0.0.0"
    assert ctx.params["port"] == 20001
    assert {"name": "http", "containerPort": 20001, "protocol": "TCP"} in container["ports"]
    roles = allowed_roles(ctx.params["console_roles"], "admin")
    assert roles == frozenset({Role("edit"), Role("view")})
    state_dir = Path(ctx.params["state_dir"])
    assert {"name": "state", "mountPath": str(state_dir)} in container["volumeMounts"]


def test_console_without_allowed_roles_admits_cluster_admin_only() -> None:
    container = _container(build_spec(profile="demo"), "kiali")
    ctx = _trellis_subcommand(container["command"], container["args"])
    # Given explicitly, so neither the environment nor a local mesh's default applies.
    assert allowed_roles(ctx.params["console_roles"], "admin,edit,view") == frozenset()


def test_tracing_args_parse_with_trellis_tracing() -> None:
    spec = build_spec(profile="demo", sets=["values.tracing.maxTraces=123"])
    container = _container(spec, "tracing")
    ctx = _trellis_subcommand(container["command"], container["args"])
    assert ctx.params["host"] == "0.0.0.0"
    assert ctx.params["max_traces"] == 123
    served = {
        ctx.params[name]
        for name in ("otlp_grpc_port", "otlp_http_port", "zipkin_port", "query_port")
    }
    assert served == {p["containerPort"] for p in container["ports"]}


@pytest.mark.parametrize("profile", ["minimal", "demo"])
def test_trellisd_args_parse_with_trellisds_parser(profile: str) -> None:
    sets = ["meshConfig.outboundTrafficPolicy.mode=REGISTRY_ONLY"]
    container = _container(build_spec(profile=profile, sets=sets), "trellisd")
    _check_entry_point(container["command"])
    parser = trellisd_parser()
    parser.allow_abbrev = False  # a renamed flag must not still match as a prefix
    args = parser.parse_args(container["args"])
    assert args.kubernetes and args.kube_namespace == "istio-system"
    assert args.outbound_traffic_policy == "REGISTRY_ONLY"
    assert str(args.state_dir) == container["volumeMounts"][0]["mountPath"]
    container_ports = {p["containerPort"] for p in container["ports"]}
    for address in (args.xds_address, args.monitoring_address, args.webhook_address):
        host, _, port = address.rpartition(":")
        assert host == "0.0.0.0" and int(port) in container_ports
    tracing = "tracing.istio-system.svc:4317" if profile == "demo" else ""
    assert args.tracing_address == tracing
    assert args.trace_sampling == (100.0 if profile == "demo" else 1.0)


@pytest.mark.parametrize(
    ("deployment", "istio"),
    [("istio-ingressgateway", "ingressgateway"), ("istio-egressgateway", "egressgateway")],
)
def test_gateway_args_parse_with_trellis_agents_parser(deployment: str, istio: str) -> None:
    container = _container(build_spec(profile="demo"), deployment)
    args = _agent_args(container)
    assert args.type == "router"
    assert f"istio={istio}" in args.labels.split(",")
    assert args.xds_address == "trellisd.istio-system.svc:15012"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {str(args.state_dir), str(args.xds_root_cert.parent), str(args.token_file.parent)} <= (
        mounts
    )
    env = {e["name"] for e in container["env"]}
    for value in (args.name, args.namespace, args.ip, args.service_account):
        assert value.startswith("$(") and value[2:-1] in env  # expanded by the kubelet
