"""`trellis analyze` against the running Bookinfo mesh: stored config, plus files not applied."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.meshctl import Mesh

pytestmark = pytest.mark.e2e

# sourceLabels that select no workload: the rule reaches no proxy, so traffic is untouched,
# yet the subset it names is still a dangling reference.
MISSING_SUBSET = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: analyze-missing-subset}
spec:
  hosts: [details]
  http:
  - match:
    - sourceLabels: {app: analyze-nobody}
    route: [{destination: {host: details, subset: v9}}]
  - route: [{destination: {host: details, subset: v1}}]
"""


def analyze_json(mesh: Mesh, *args: str) -> list[dict[str, Any]]:
    proc = mesh.cli("analyze", "-o", "json", *args)
    messages: list[dict[str, Any]] = json.loads(proc.stdout)
    return messages


def about(messages: list[dict[str, Any]], origin: str) -> list[dict[str, Any]]:
    """IST0101 messages about one resource (other tests may leave VirtualServices that make
    unrelated messages, such as IST0109, while they run)."""
    return [m for m in messages if m["origin"] == origin and m["code"] == "IST0101"]


DETAILS_WITH_V9 = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: details}
spec:
  host: details
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v9, labels: {version: v9}}
"""


def test_a_stored_missing_subset_is_reported_as_ist0101_and_goes_away(bookinfo: Mesh) -> None:
    origin = "VirtualService analyze-missing-subset.default"
    # Apply refuses a subset no DestinationRule defines; config comes to dangle when the
    # DestinationRule is re-applied without it later, which is what analyze is for.
    refused = bookinfo.cli("apply", "-f", "-", input=MISSING_SUBSET, check=False)
    assert refused.returncode == 1 and "v9" in refused.stderr
    try:
        bookinfo.apply(DETAILS_WITH_V9 + "---" + MISSING_SUBSET)
        assert about(analyze_json(bookinfo), origin) == []
        bookinfo.apply_file("destination-rule-all.yaml")  # details loses v9 again
        [msg] = about(analyze_json(bookinfo), origin)
        assert msg["code"] == "IST0101" and msg["level"] == "Error"
        assert (
            "'v9'" in msg["message"]
            and "spec.http[0].route[0].destination.subset" in (msg["message"])
        )
        assert msg["documentationUrl"].endswith("/ist0101/")
        log = bookinfo.cli("analyze", check=False)
        assert log.returncode == 79
        assert f"Error [IST0101] ({origin})" in log.stdout
    finally:
        bookinfo.cli("delete", "-f", "-", input=MISSING_SUBSET, check=False)
        bookinfo.apply_file("destination-rule-all.yaml")
    assert about(analyze_json(bookinfo), origin) == []
    assert about(analyze_json(bookinfo, "-A"), origin) == []


def test_files_are_analysed_as_if_applied_without_being_stored(
    bookinfo: Mesh, tmp_path: Path
) -> None:
    path = tmp_path / "vs.yaml"
    path.write_text(MISSING_SUBSET.replace("subset: v9", "subset: v1"))
    before = bookinfo.cli("get", "vs", "-A", "-o", "json").stdout
    # The file's VirtualService names an existing subset: nothing to say about it.
    assert (
        about(
            analyze_json(bookinfo, "-f", str(path)), "VirtualService analyze-missing-subset.default"
        )
        == []
    )
    path.write_text(
        MISSING_SUBSET.replace("hosts: [details]", "hosts: [details]\n  gateways: [nope]")
    )
    proc = bookinfo.cli("analyze", "-f", str(path), check=False)
    assert proc.returncode == 79
    assert 'Referenced gateway not found: "default/nope"' in proc.stdout
    assert str(path) in proc.stdout  # the message says where the resource came from
    assert bookinfo.cli("get", "vs", "-A", "-o", "json").stdout == before
