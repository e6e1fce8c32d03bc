"""`trellis apply | delete | get`: Istio resources and Services in the mesh's config store."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import typer

from trellis.api.kinds import resolve_kind
from trellis.cli.common import StateDirOption, layout_for, trellisd
from trellis.cli.output import Format, console, print_items
from trellis.errors import TrellisError


def read_input(filename: str) -> str:
    """A -f argument's text (`-` is stdin) as UTF-8; anything unreadable is one error line."""
    where = "standard input" if filename == "-" else filename
    try:
        if filename == "-":
            stream = getattr(sys.stdin, "buffer", None)
            data = stream.read() if stream is not None else sys.stdin.read().encode()
        else:
            data = Path(filename).read_bytes()
    except OSError as e:
        raise TrellisError(f"cannot read {where}: {e.strerror or e}") from e
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TrellisError(
            f"cannot read {where}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset "
            f"{e.start}); save it as UTF-8"
        ) from None


def _plural(kind: str) -> str:
    group = resolve_kind(kind).GROUP
    return f"{kind.lower()}.{group}" if group else kind.lower()


def apply(
    filename: str = typer.Option(..., "-f", "--filename", help="YAML file, or - for stdin"),
    namespace: str = typer.Option(
        "default", "-n", "--namespace", help="Namespace for resources without one"
    ),
    state_dir: Path | None = StateDirOption,
) -> None:
    """Create or update resources; several documents are applied all together or not at all."""
    text = read_input(filename)
    body = trellisd(layout_for(state_dir)).call(
        "POST", "/apply", {"yaml": text, "namespace": namespace}
    )
    for r in body["results"]:
        console.print(f"{_plural(r['kind'])}/{r['name']} {r['action']}")


def delete(
    kind: str | None = typer.Argument(None, help="Kind (vs, dr, gw, se, svc, ...)"),
    name: str | None = typer.Argument(None),
    filename: str | None = typer.Option(None, "-f", "--filename"),
    namespace: str = typer.Option("default", "-n", "--namespace"),
    state_dir: Path | None = StateDirOption,
) -> None:
    """Delete resources named in a file, or one resource by kind and name."""
    if filename:
        req: dict[str, Any] = {"yaml": read_input(filename), "namespace": namespace}
    elif kind and name:
        req = {"kind": kind, "name": name, "namespace": namespace}
    else:
        raise TrellisError(
            "say what to delete: -f FILE, or KIND NAME (e.g. `trellis delete vs reviews`)"
        )
    body = trellisd(layout_for(state_dir)).call("POST", "/delete", req)
    for k, _, n in body["deleted"]:
        console.print(f"{_plural(k)}/{n} deleted")


def get(
    kind: str = typer.Argument(..., help="Kind (vs, dr, gw, se, we, svc, ...)"),
    name: str | None = typer.Argument(None),
    namespace: str = typer.Option("default", "-n", "--namespace"),
    all_namespaces: bool = typer.Option(False, "-A", "--all-namespaces"),
    output: Format = typer.Option(Format.table, "-o", "--output"),
    state_dir: Path | None = StateDirOption,
) -> None:
    """List resources of a kind, or show one."""
    query = [("kind", resolve_kind(kind).KIND)]
    if not all_namespaces:
        query.append(("namespace", namespace))
    if name:
        query.append(("name", name))
    items = trellisd(layout_for(state_dir)).call("GET", f"/resources?{urlencode(query)}")["items"]
    rows = [_row(i) for i in items]
    print_items(
        rows,
        output,
        [
            ("NAMESPACE", "namespace"),
            ("NAME", "name"),
            ("KIND", "kind"),
            ("HOSTS", "hosts"),
            ("RESOURCE VERSION", "rv"),
        ],
        raw=items,
    )


def _row(item: dict[str, Any]) -> dict[str, Any]:
    spec = item.get("spec") or {}
    hosts = spec.get("hosts") or ([spec["host"]] if "host" in spec else [])
    meta = item.get("metadata", {})
    return {
        "namespace": meta.get("namespace"),
        "name": meta.get("name"),
        "kind": item.get("kind"),
        "hosts": hosts,
        "rv": meta.get("resourceVersion"),
    }
