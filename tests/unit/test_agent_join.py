"""`trellis-agent --join`: cluster.env round trip and the identity the agent claims."""

from __future__ import annotations

from pathlib import Path

import pytest

from trellis.agent import join
from trellis.agent.main import parse_config

ENV = {
    join.ENV_NAMESPACE: "vms",
    join.ENV_GROUP: "vmgroup",
    join.ENV_SERVICE_ACCOUNT: "vm-sa",
    join.ENV_LABELS: "app=vmapp,class=vm",
    join.ENV_APP_PORTS: "8000",
    join.ENV_XDS_ADDRESS: "127.0.0.1:15010",
}


def test_cluster_env_round_trips_with_quoting() -> None:
    values = {**ENV, "ODD": "a b 'c'"}
    assert join.parse_cluster_env(join.render_cluster_env(values)) == values


def test_join_reads_identity_from_cluster_env(tmp_path: Path) -> None:
    env_file = tmp_path / "cluster.env"
    env_file.write_text(join.render_cluster_env(ENV))
    token = tmp_path / "join-token"
    token.write_text("tj1.payload.mac\n")
    argv = f"--join {token} --cluster-env {env_file} --ip 198.18.3.4 --state-dir {tmp_path}"
    config = parse_config([*argv.split(), "--", "app"])
    opts = config.bootstrap
    assert (opts.name, opts.namespace, opts.ip) == ("vmgroup-198.18.3.4", "vms", "198.18.3.4")
    assert opts.service_account == "vm-sa"
    assert dict(opts.labels) == {"app": "vmapp", "class": "vm"}
    assert opts.app_ports == (8000,)
    assert opts.xds_token == "tj1.payload.mac"
    assert config.app_argv == ("app",)


def test_command_line_wins_over_cluster_env(tmp_path: Path) -> None:
    env_file = tmp_path / "cluster.env"
    env_file.write_text(join.render_cluster_env(ENV))
    argv = f"--join tj1.a.b --cluster-env {env_file} --group other -n x --ip 198.18.3.4"
    config = parse_config([*argv.split(), "--state-dir", str(tmp_path)])
    assert (config.bootstrap.name, config.bootstrap.namespace) == ("other-198.18.3.4", "x")


def test_join_detects_the_address_towards_trellisd(tmp_path: Path) -> None:
    argv = "--join tj1.a.b --group g --xds-address 127.0.0.1:15010 --state-dir"
    config = parse_config([*argv.split(), str(tmp_path)])
    assert config.bootstrap.ip == "127.0.0.1"
    assert config.bootstrap.name == "g-127.0.0.1"


def test_without_join_name_and_ip_stay_required(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--name is required"):
        parse_config(["--ip", "1.2.3.4", "--xds-address", "h:1", "--state-dir", str(tmp_path)])
