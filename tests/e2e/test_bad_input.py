"""Bad input gets one clear error and loses nothing."""

from __future__ import annotations

import socket

import pytest

from tests.e2e.meshctl import Mesh

pytestmark = pytest.mark.e2e

CASES = {
    "malformed yaml": ("kind: VirtualService\nmetadata: {name: x\n", "line"),
    "unknown kind": (
        "apiVersion: networking.istio.io/v1\nkind: VirtualThing\nmetadata: {name: x}\n",
        "VirtualThing",
    ),
    "invalid weights": (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: w}\n"
        "spec:\n  hosts: [ratings]\n  http:\n  - route:\n    - destination: {host: ratings}\n"
        "      weight: 150\n",
        "weight",
    ),
    # Istio accepts a subset no stored DestinationRule defines (`trellis analyze` reports it);
    # a DestinationRule for the host in the same apply that lacks it is rejected, whole.
    "missing subset": (
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: s}\n"
        "spec:\n  host: ratings\n  subsets:\n  - {name: v1, labels: {version: v1}}\n---\n"
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: s}\n"
        "spec:\n  hosts: [ratings]\n  http:\n  - route:\n    - destination: {host: ratings, subset: v9}\n",
        "v9",
    ),
    "regex envoy rejects": (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\n"
        "spec:\n  hosts: [ratings]\n  http:\n  - match:\n    - uri: {regex: 'a{1001}'}\n"
        "    route:\n    - destination: {host: ratings}\n",
        "RE2",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_rejected_with_a_clear_error(bookinfo: Mesh, case: str) -> None:
    text, must_mention = CASES[case]
    before = [bookinfo.cli("get", k, "-A", "-o", "json").stdout for k in ("vs", "dr")]
    proc = bookinfo.cli("apply", "-f", "-", input=text, check=False)
    assert proc.returncode == 1
    assert must_mention in proc.stderr
    assert proc.stderr.startswith("error:") and "Traceback" not in proc.stderr
    assert [bookinfo.cli("get", k, "-A", "-o", "json").stdout for k in ("vs", "dr")] == before


def test_a_second_up_is_refused(bookinfo: Mesh) -> None:
    proc = bookinfo.cli("up", "--ingress-port", str(bookinfo.ingress_port), check=False)
    assert proc.returncode == 1
    assert "already running" in proc.stderr
    assert bookinfo.http("/productpage")[0] == 200


def test_ingress_port_in_use_is_refused(
    bookinfo: Mesh, tmp_path_factory: pytest.TempPathFactory
) -> None:
    other = Mesh(state_dir=tmp_path_factory.mktemp("other"), ingress_port=bookinfo.ingress_port)
    proc = other.cli("up", "--ingress-port", str(bookinfo.ingress_port), check=False)
    assert proc.returncode == 1
    assert "in use" in proc.stderr and "--ingress-port" in proc.stderr
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", bookinfo.ingress_port)) == 0
