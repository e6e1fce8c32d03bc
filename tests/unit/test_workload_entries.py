"""WorkloadEntry -> registry Workload, WorkloadGroup auto-registration, group join tokens."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest

from trellis.api.kinds import parse_documents
from trellis.api.networking import WorkloadEntry, WorkloadGroup
from trellis.ca.identity import JoinTokenIssuer
from trellis.controlplane.auth import TOKEN_HEADER, JoinTokenAuthenticator
from trellis.controlplane.autoregister import AutoRegistrar, JoinRefused
from trellis.controlplane.state import MeshState
from trellis.model.proxy import Proxy, ProxyType
from trellis.model.push_context import PushContext
from trellis.model.snapshot import MeshConfig, MeshSnapshot
from trellis.registry.local import services_from_resources
from trellis.registry.workload_entries import (
    TLS_MODE_LABEL,
    auto_entry_name,
    auto_registered_entry,
    auto_registration_group,
    group_grant,
    group_of_grant,
    same_registration,
    workload_from_entry,
    workloads_from_resources,
)
from trellis.store.sqlite import SqliteStore
from trellis.xds.server import NotAuthenticated

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

ENTRY = """
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ratings-vm, namespace: default}
spec:
  address: 198.18.7.9
  labels: {app: ratings, version: v9}
  ports: {http: 9090}
"""
GROUP = """
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: vmgroup, namespace: default}
spec:
  metadata:
    labels: {app: vmapp}
  template:
    labels: {app: ignored, class: vm}
    serviceAccount: vm-sa
    ports: {http: 8000}
"""
SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: default}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080, targetPort: 9080}, {name: tcp-x, port: 7000}]
"""


def one(text: str) -> WorkloadEntry:
    return cast(WorkloadEntry, parse_documents(text)[0])


def group() -> WorkloadGroup:
    return cast(WorkloadGroup, parse_documents(GROUP)[0])


def entry_with(**spec: object) -> WorkloadEntry:
    base = one(ENTRY)
    return base.model_copy(update={"spec": base.spec.model_copy(update=spec)})


# --- conversion -------------------------------------------------------------------------


def test_entry_becomes_workload_with_labels_ports_and_identity() -> None:
    workload = workload_from_entry(one(ENTRY))
    assert workload is not None
    assert (workload.name, workload.namespace, workload.ip) == (
        "ratings-vm",
        "default",
        "198.18.7.9",
    )
    assert dict(workload.labels) == {"app": "ratings", "version": "v9"}
    assert workload.ports == (9090,)
    assert dict(workload.named_ports) == {"http": 9090}
    assert workload.service_account == "default"


def test_entry_without_service_account_or_label_has_no_sidecar() -> None:
    assert workload_from_entry(one(ENTRY)).has_sidecar is False  # type: ignore[union-attr]


def test_entry_with_service_account_has_sidecar() -> None:
    workload = workload_from_entry(entry_with(service_account="ratings"))
    assert workload is not None and workload.has_sidecar
    assert workload.service_account == "ratings"


def test_tls_mode_label_wins_over_service_account() -> None:
    labels = {"app": "ratings", TLS_MODE_LABEL: "disabled"}
    workload = workload_from_entry(entry_with(service_account="ratings", labels=labels))
    assert workload is not None and not workload.has_sidecar
    labelled = workload_from_entry(entry_with(labels={TLS_MODE_LABEL: "istio"}))
    assert labelled is not None and labelled.has_sidecar


def test_dns_address_is_not_a_workload() -> None:
    assert workload_from_entry(entry_with(address="vm.example.com")) is None


def test_only_workload_entries_become_workloads() -> None:
    resources = parse_documents(ENTRY + "---" + GROUP + "---" + SERVICE)
    assert [w.name for w in workloads_from_resources(resources)] == ["ratings-vm"]


def test_selected_entry_is_a_service_endpoint_on_its_named_port() -> None:
    resources = parse_documents(ENTRY + "---" + SERVICE)
    services = services_from_resources(resources, {"default/ratings": "240.240.0.9"})
    snapshot = MeshSnapshot(
        version=1, services=services, workloads=workloads_from_resources(resources)
    )
    push = PushContext.build(snapshot)
    service = services[0]
    http, tcp = service.ports
    assert [(e.address, e.port) for e in push.endpoints(service, http)] == [("198.18.7.9", 9090)]
    # A port the entry does not name keeps the service's targetPort.
    assert [(e.address, e.port) for e in push.endpoints(service, tcp)] == [("198.18.7.9", 7000)]
    assert push.endpoints(service, http)[0].has_sidecar is False


# --- WorkloadGroup template -------------------------------------------------------------


def test_auto_registered_entry_is_named_group_dash_ip() -> None:
    entry = auto_registered_entry(group(), "198.18.3.4", connected_at=NOW.isoformat())
    assert entry.name == "vmgroup-198.18.3.4" == auto_entry_name("vmgroup", "198.18.3.4")
    assert auto_entry_name("g", "fd00::1") == "g-fd00--1"


def test_auto_registered_entry_takes_the_template_and_marks_the_group() -> None:
    entry = auto_registered_entry(group(), "198.18.3.4", connected_at=NOW.isoformat())
    assert entry.spec.address == "198.18.3.4"
    assert entry.spec.labels == {"app": "vmapp", "class": "vm", TLS_MODE_LABEL: "istio"}
    assert entry.spec.service_account == "vm-sa"
    assert entry.spec.ports == {"http": 8000}
    assert auto_registration_group(entry) == "vmgroup"
    assert auto_registration_group(one(ENTRY)) is None
    workload = workload_from_entry(entry)
    assert workload is not None and workload.has_sidecar


def test_reconnect_with_new_timestamp_is_the_same_registration() -> None:
    first = auto_registered_entry(group(), "198.18.3.4", connected_at="a")
    again = auto_registered_entry(group(), "198.18.3.4", connected_at="b")
    other = auto_registered_entry(group(), "198.18.3.5", connected_at="a")
    assert same_registration(first, again)
    assert not same_registration(first, other)


def test_group_grant_round_trip_and_ordinary_workloads() -> None:
    assert group_of_grant(group_grant("vmgroup")) == "vmgroup"
    assert group_of_grant("details-v1") is None


# --- trellisd: registrar and authenticator ----------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def state(tmp_path: Path) -> Iterator[MeshState]:
    store = SqliteStore(tmp_path / "config.db")
    mesh = MeshState(store=store, mesh=MeshConfig(), notify=lambda *_: None)
    mesh.apply(parse_documents(GROUP))
    yield mesh
    store.close()


def vm_proxy(ip: str = "198.18.3.4", sa: str = "vm-sa", name: str | None = None) -> Proxy:
    return Proxy(
        type=ProxyType.SIDECAR,
        ip=ip,
        name=name or auto_entry_name("vmgroup", ip),
        namespace="default",
        service_account=sa,
    )


def entries(state: MeshState) -> list[str]:
    return [r.name for r in state.resources("WorkloadEntry")]


def test_join_creates_the_entry_and_its_workload(state: MeshState) -> None:
    AutoRegistrar(state, Clock()).join(vm_proxy(), "vmgroup")
    assert entries(state) == ["vmgroup-198.18.3.4"]
    assert [w.ip for w in state.snapshot.workloads] == ["198.18.3.4"]


def test_rejoin_does_not_rewrite_an_unchanged_entry(state: MeshState) -> None:
    registrar = AutoRegistrar(state, Clock())
    registrar.join(vm_proxy(), "vmgroup")
    version = state.snapshot.version
    registrar.join(vm_proxy(), "vmgroup")
    assert state.snapshot.version == version


def test_join_refuses_unknown_group_and_other_service_account(state: MeshState) -> None:
    registrar = AutoRegistrar(state, Clock())
    with pytest.raises(JoinRefused, match="no WorkloadGroup nope"):
        registrar.join(vm_proxy(), "nope")
    with pytest.raises(JoinRefused, match="service account 'vm-sa'"):
        registrar.join(vm_proxy(sa="other"), "vmgroup")
    assert entries(state) == []


def test_join_does_not_take_over_a_user_applied_entry(state: MeshState) -> None:
    state.apply(parse_documents(ENTRY.replace("ratings-vm", "vmgroup-198.18.3.4")))
    with pytest.raises(JoinRefused, match="not auto-registered"):
        AutoRegistrar(state, Clock()).join(vm_proxy(), "vmgroup")


def test_entry_is_removed_after_the_grace_period_only(state: MeshState) -> None:
    clock = Clock()
    registrar = AutoRegistrar(state, clock, grace=timedelta(seconds=10))
    registrar.join(vm_proxy(), "vmgroup")
    assert registrar.reconcile([vm_proxy()]) == []
    assert registrar.reconcile([]) == []  # gone: the grace period starts now
    clock.now += timedelta(seconds=9)
    assert registrar.reconcile([]) == []
    clock.now += timedelta(seconds=1)
    assert registrar.reconcile([]) == ["default/vmgroup-198.18.3.4"]
    assert entries(state) == []


def test_reconnect_within_grace_keeps_the_entry(state: MeshState) -> None:
    clock = Clock()
    registrar = AutoRegistrar(state, clock, grace=timedelta(seconds=10))
    registrar.join(vm_proxy(), "vmgroup")
    registrar.reconcile([])
    clock.now += timedelta(seconds=9)
    registrar.join(vm_proxy(), "vmgroup")
    clock.now += timedelta(seconds=9)
    assert registrar.reconcile([]) == []
    assert entries(state) == ["vmgroup-198.18.3.4"]


def test_user_applied_entries_are_never_reconciled_away(state: MeshState) -> None:
    clock = Clock()
    state.apply(parse_documents(ENTRY))
    registrar = AutoRegistrar(state, clock, grace=timedelta(0))
    assert registrar.reconcile([]) == []
    assert entries(state) == ["ratings-vm"]


def authenticate(state: MeshState, proxy: Proxy, workload: str) -> None:
    issuer = JoinTokenIssuer(b"k" * 32)
    token = issuer.mint(namespace="default", service_account="vm-sa", workload=workload, now=NOW)
    auth = JoinTokenAuthenticator(issuer, Clock(), AutoRegistrar(state, Clock()).join)
    auth(proxy, ((TOKEN_HEADER, token),))


def test_group_token_admits_and_registers_group_dash_ip(state: MeshState) -> None:
    authenticate(state, vm_proxy(), group_grant("vmgroup"))
    assert entries(state) == ["vmgroup-198.18.3.4"]


def test_group_token_refuses_another_proxy_name(state: MeshState) -> None:
    with pytest.raises(NotAuthenticated, match=r"admits the proxy vmgroup-198\.18\.3\.4"):
        authenticate(state, vm_proxy(name="details-v1"), group_grant("vmgroup"))
    assert entries(state) == []


def test_group_token_for_a_missing_group_is_refused(state: MeshState) -> None:
    proxy = vm_proxy(name=auto_entry_name("gone", "198.18.3.4"))
    with pytest.raises(NotAuthenticated, match="no WorkloadGroup gone"):
        authenticate(state, proxy, group_grant("gone"))


def test_ordinary_token_still_binds_the_workload_name(state: MeshState) -> None:
    authenticate(state, vm_proxy(name="details-v1"), "details-v1")
    with pytest.raises(NotAuthenticated):
        authenticate(state, vm_proxy(name="details-v2"), "details-v1")
    assert entries(state) == []
