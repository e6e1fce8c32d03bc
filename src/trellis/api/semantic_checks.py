"""Shared pieces of semantic validation: the problem list and checks several kinds use."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from trellis.api.common import Percent
from trellis.api.re2_check import re2_problem

Problems = list[tuple[str, str]]
"""(field path, reason) pairs found while checking one resource."""

_DNS_NAME = re.compile(
    r"^(\*|(\*\.)?[A-Za-z0-9]([-A-Za-z0-9_]*[A-Za-z0-9])?(\.[A-Za-z0-9_-]+)*\.?)$"
)


def check_regex(pattern: str, field: str, problems: Problems) -> None:
    """The pattern must compile in RE2 within Envoy's program-size limit (api/re2_check.py)."""
    problem = re2_problem(pattern)
    if problem is not None:
        problems.append((field, problem))


def check_percent(percent: Percent | None, field: str, problems: Problems) -> None:
    if percent is not None and not 0.0 <= percent.value <= 100.0:
        problems.append((f"{field}.value", f"{percent.value} is not a percentage; use 0..100"))


def check_int_range(value: int | None, low: int, high: int, field: str, problems: Problems) -> None:
    if value is not None and not low <= value <= high:
        problems.append((field, f"{value} is out of range; use {low}..{high}"))


def check_port(value: int | None, field: str, problems: Problems, *, required: bool = True) -> None:
    if value is None:
        if required:
            problems.append((field, "a port number is required; set it (1..65535)"))
        return
    check_int_range(value, 1, 65535, field, problems)


def check_host(host: str, field: str, problems: Problems) -> None:
    """A short name (reviews), an FQDN, a `*.` wildcard, `*`, or an IP address."""
    if not host:
        problems.append((field, "host is empty; name a service such as reviews"))
    elif not (_DNS_NAME.match(host) or is_ip(host)):
        problems.append(
            (field, f"{host!r} is not a host name; use a short name, an FQDN or *.domain")
        )


def check_unique(values: Iterable[object], field: str, what: str, problems: Problems) -> None:
    seen: set[object] = set()
    for value in values:
        if value in seen:
            problems.append((field, f"{what} {value} appears more than once; make it unique"))
        seen.add(value)


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def check_cidr(text: str, field: str, problems: Problems) -> None:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        problems.append((field, f"{text!r} is not an IP address or CIDR block"))
