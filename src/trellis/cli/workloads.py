"""`trellis run | exec | ps | logs | stop`: workloads in the one-machine runtime."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import typer

from trellis.cli.common import StateDirOption, layout_for, runtime, split_name
from trellis.cli.output import Format, console, err_console, print_items
from trellis.errors import NotFound, TrellisError

PASS_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV", "TERM")


def parse_labels(text: str | None) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in filter(None, (text or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise TrellisError(
                f"--labels: {item!r} is not KEY=VALUE (example: app=reviews,version=v1)"
            )
        labels[key.strip()] = value.strip()
    return labels


def parse_ports(text: str | None) -> list[int]:
    ports = []
    for item in filter(None, (text or "").split(",")):
        if not item.strip().isdigit() or not 0 < int(item) < 65536:
            raise TrellisError(f"--port: {item!r} is not a port number (1-65535)")
        ports.append(int(item))
    return ports


def run(
    name: str = typer.Argument(..., help="Workload name"),
    command: list[str] = typer.Argument(None, help="The application command, after --"),
    namespace: str = typer.Option("default", "-n", "--namespace"),
    labels: str = typer.Option("", "--labels", help="k=v,... (app and version as Istio uses them)"),
    port: str = typer.Option("", "--port", help="Port(s) the app listens on: P[,P]"),
    service_account: str = typer.Option("default", "--service-account"),
    no_sidecar: bool = typer.Option(False, "--no-sidecar", help="Run without a sidecar"),
    state_dir: Path | None = StateDirOption,
) -> None:
    """Start an app in its own network namespace with its sidecar; return when it is ready."""
    body = start_workload(
        layout_for(state_dir),
        name=name,
        namespace=namespace,
        labels=parse_labels(labels),
        ports=parse_ports(port),
        service_account=service_account,
        sidecar=not no_sidecar,
        command=command or [],
    )
    console.print(f"workload {name} started in namespace {namespace} at {body['ip']}")


def start_workload(
    layout: Any,
    *,
    name: str,
    namespace: str,
    labels: dict[str, str],
    ports: list[int],
    service_account: str,
    sidecar: bool,
    command: list[str],
) -> dict[str, Any]:
    if not command and not sidecar:
        raise TrellisError("nothing to run: give the app command after --, e.g. -- python app.py")
    labels.setdefault("app", name)
    body = {
        "name": name,
        "namespace": namespace,
        "labels": labels,
        "ports": ports,
        "serviceAccount": service_account,
        "sidecar": sidecar,
        "command": command,
        "env": {k: os.environ[k] for k in PASS_ENV if k in os.environ},
        "cwd": os.getcwd(),
    }
    with err_console.status(f"Starting {name}..."):
        result: dict[str, Any] = runtime(layout).call("POST", "/workloads", body, timeout=120)
    return result


def find_workload(layout: Any, name: str, namespace: str) -> dict[str, Any]:
    for item in runtime(layout).call("GET", "/workloads")["items"]:
        if item["name"] == name and item["namespace"] == namespace:
            return dict(item)
    raise NotFound(f"no workload {name} in namespace {namespace}; see `trellis ps`")


def exec_(
    name: str = typer.Argument(..., help="Workload name"),
    command: list[str] = typer.Argument(..., help="Command to run, after --"),
    namespace: str = typer.Option("default", "-n", "--namespace"),
    state_dir: Path | None = StateDirOption,
) -> None:
    """Run a command inside a workload's network namespace (its traffic is captured too);
    without capture, with the workload's environment (HTTP_PROXY to its sidecar)."""
    item = find_workload(layout_for(state_dir), name, namespace)
    if item.get("netns"):
        os.execvp("ip", ["ip", "netns", "exec", item["netns"], *command])
    env = {**os.environ, **{str(k): str(v) for k, v in dict(item.get("env") or {}).items()}}
    os.execvpe(command[0], command, env)


def ps(
    namespace: str | None = typer.Option(None, "-n", "--namespace"),
    output: Format = typer.Option(Format.table, "-o", "--output"),
    state_dir: Path | None = StateDirOption,
) -> None:
    """List workloads."""
    items = runtime(layout_for(state_dir)).call("GET", "/workloads")["items"]
    items = [i for i in items if namespace is None or i["namespace"] == namespace]
    for i in items:
        i["status"] = "Running" if i["alive"] else "Restarting"
        i["sidecarText"] = "yes" if i["sidecar"] else "no"
    print_items(
        items,
        output,
        [
            ("NAMESPACE", "namespace"),
            ("NAME", "name"),
            ("STATUS", "status"),
            ("IP", "ip"),
            ("PORTS", "ports"),
            ("SIDECAR", "sidecarText"),
            ("RESTARTS", "restarts"),
            ("LABELS", "labels"),
        ],
    )


def logs(
    name: str = typer.Argument(
        ..., help="Workload name (istio-ingressgateway -n istio-system for the gateway)"
    ),
    namespace: str = typer.Option("default", "-n", "--namespace"),
    proxy: bool = typer.Option(False, "--proxy", help="Show the sidecar's (Envoy's) log"),
    follow: bool = typer.Option(False, "-f", "--follow"),
    tail: int = typer.Option(-1, "--tail", help="Lines from the end (-1 = all)"),
    state_dir: Path | None = StateDirOption,
) -> None:
    """Print a workload's application log, or with --proxy its sidecar's log."""
    layout = layout_for(state_dir)
    name, namespace = split_name(name, namespace)
    wdir = layout.workload_dir(namespace, name)
    path = wdir / ("envoy.log" if proxy else "app.log")
    if not path.exists():
        raise NotFound(
            f"no {'proxy ' if proxy else ''}log for {name} in namespace {namespace} ({path})"
        )
    lines = path.read_text(errors="replace").splitlines()
    print("\n".join(lines if tail < 0 else lines[-tail:]))
    if follow:
        _follow(path)


def _follow(path: Path) -> None:
    with open(path, errors="replace") as f:
        f.seek(0, os.SEEK_END)
        while True:
            line = f.readline()
            if line:
                print(line, end="", flush=True)
            else:
                time.sleep(0.2)


def stop(
    name: str = typer.Argument(...),
    namespace: str = typer.Option("default", "-n", "--namespace"),
    state_dir: Path | None = StateDirOption,
) -> None:
    """Stop a workload: drain its sidecar, stop the app, remove its namespace."""
    with err_console.status(f"Stopping {name}..."):
        runtime(layout_for(state_dir)).call("DELETE", f"/workloads/{namespace}/{name}", timeout=60)
    console.print(f"workload {name} stopped")
