"""`trellis demo`: the mesh plus Bookinfo, ready to browse, in one command."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from trellis.cli.common import StateDirOption, layout_for, mesh_info, runtime, trellisd
from trellis.cli.config import read_input
from trellis.cli.console_options import print_console
from trellis.cli.mesh import CaptureOption, start_mesh
from trellis.cli.monitoring import (
    PrometheusOption,
    PrometheusPortOption,
    print_prometheus,
    prometheus_options,
)
from trellis.cli.output import console
from trellis.cli.workloads import start_workload
from trellis.errors import Conflict, RuntimeProblem, TrellisError
from trellis.runtime.layout import MeshInfo

DEMO_TRACE_SAMPLING = 100.0  # percent
BOOKINFO_WORKLOADS = (
    ("productpage", "v1"),
    ("details", "v1"),
    ("ratings", "v1"),
    ("reviews", "v1"),
    ("reviews", "v2"),
    ("reviews", "v3"),
)


def samples_dir() -> Path:
    """The repository's samples/ (Trellis is installed editable from its checkout)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "samples" / "bookinfo").is_dir():
            return parent / "samples"
    raise RuntimeProblem(
        "cannot find samples/bookinfo; run trellis from its git checkout (./setup.sh)"
    )


def demo(
    state_dir: Path | None = StateDirOption,
    ingress_port: int = typer.Option(8080, "--ingress-port"),
    capture: str | None = CaptureOption,
    prometheus: bool = PrometheusOption,
    prometheus_port: int = PrometheusPortOption,
) -> None:
    """Start the mesh (if needed) and Bookinfo behind the ingress gateway."""
    layout = layout_for(state_dir)
    info = MeshInfo.load(layout.mesh_file)
    if info is None or not info.ready:
        # Every Bookinfo request traced, as in Istio's demo profile.
        start_mesh(
            layout,
            ingress_port=ingress_port,
            egress_gateway=False,
            capture=capture,
            trace_sampling=DEMO_TRACE_SAMPLING,
            prometheus=prometheus_options(prometheus, prometheus_port, "", None),
        )
    elif capture is not None and capture != info.capture:
        raise Conflict(
            f"the mesh in {layout.root} runs with --capture={info.capture}; "
            "stop it with `trellis down` to start Bookinfo with another mode"
        )
    samples = samples_dir()
    api = trellisd(layout)
    for f in ("bookinfo.yaml", "networking/bookinfo-gateway.yaml"):
        api.call("POST", "/apply", {"yaml": read_input(str(samples / "bookinfo" / f))})
    running = {
        (w["namespace"], w["name"]) for w in runtime(layout).call("GET", "/workloads")["items"]
    }
    script = str(samples / "bookinfo" / "bookinfo.py")
    for service, version in BOOKINFO_WORKLOADS:
        name = f"{service}-{version}"
        if ("default", name) in running:
            continue
        try:
            start_workload(
                layout,
                name=name,
                namespace="default",
                labels={"app": service, "version": version},
                ports=[9080],
                service_account=f"bookinfo-{service}",
                sidecar=True,
                command=[sys.executable, script, service, "--port", "9080", "--version", version],
            )
        except TrellisError as e:
            raise RuntimeProblem(f"starting {name} failed: {e}") from e
        console.print(f"  started {name}")
    port = mesh_info(layout).ingress_port
    console.print("\nBookinfo is running. Open:")
    console.print(f"  http://127.0.0.1:{port}/productpage")
    console.print(f"  http://127.0.0.1:{port}/api/v1/products")
    query_port = mesh_info(layout).tracing_query_port
    if query_port:
        console.print(
            f"Traces: http://127.0.0.1:{query_port}/api/traces?service=productpage.default"
        )
    print_prometheus(mesh_info(layout))
    print_console(mesh_info(layout))
    networking = samples / "bookinfo" / "networking"  # absolute: works from any directory
    console.print(f"Try routing: trellis apply -f {networking / 'destination-rule-all.yaml'}")
    console.print(f"        then trellis apply -f {networking / 'virtual-service-all-v1.yaml'}")
