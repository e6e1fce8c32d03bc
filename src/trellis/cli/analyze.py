"""`trellis analyze`: Istio's analyzer messages for the running mesh's config, plus local files.

As `istioctl analyze`: files given with -f are analysed as if applied on top of the stored
config; the exit code is 79 when a message reaches --failure-threshold (default Error) and 65
when a file could not be parsed, in the human formats; -o json/yaml always exit 0.
"""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.table import Table
from rich.text import Text

from trellis.analyze import Level, Message, parse_problem_messages
from trellis.analyze import analyze as run_analyzers
from trellis.api.base import Resource
from trellis.api.kinds import parse_resource
from trellis.cli.common import StateDirOption, layout_for, trellisd
from trellis.cli.config import read_input
from trellis.cli.output import console, err_console
from trellis.errors import ValidationError, ValidationErrors

EXIT_FOUND_ISSUES = 79  # istioctl's ExitAnalyzerFoundIssues
EXIT_DATA_ERROR = 65  # istioctl's ExitDataError: a file could not be parsed

ResourceKey = tuple[str, str, str]


class AnalyzeFormat(enum.StrEnum):
    log = "log"
    table = "table"
    json = "json"
    yaml = "yaml"


class Threshold(enum.StrEnum):
    Error = "Error"
    Warning = "Warning"
    Info = "Info"


def analyze(
    filenames: list[str] = typer.Option(
        [], "-f", "--filename", help="YAML file(s) to analyse as if applied (- for stdin)"
    ),
    namespace: str = typer.Option("default", "-n", "--namespace", help="Namespace to report on"),
    all_namespaces: bool = typer.Option(False, "-A", "--all-namespaces"),
    output: AnalyzeFormat = typer.Option(AnalyzeFormat.log, "-o", "--output"),
    failure_threshold: Threshold = typer.Option(
        Threshold.Error, "--failure-threshold", help="Level that makes the exit code non-zero"
    ),
    offline: bool = typer.Option(
        False, "--offline", help="Analyse only the files, without asking the running mesh"
    ),
    state_dir: Path | None = StateDirOption,
) -> None:
    """Check config for problems Istio's analyzers report (IST0101, IST0109, ...)."""
    resources: dict[ResourceKey, Resource] = {}
    if not offline:
        resources.update((r.key, r) for r in _stored(state_dir))
    references: dict[ResourceKey, str] = {}
    parse_messages: list[Message] = []
    for filename in filenames:
        parsed, problems = _read_file(filename, namespace)
        parse_messages += parse_problem_messages(problems, reference=filename)
        for resource in parsed:
            resources[resource.key] = resource
            references[resource.key] = filename
    scope = None if all_namespaces else [namespace]
    found = run_analyzers(resources.values(), namespaces=scope, references=references)
    messages = parse_messages + found
    _print(messages, output, "all namespaces" if all_namespaces else f"namespace {namespace}")
    if output in (AnalyzeFormat.json, AnalyzeFormat.yaml):
        return  # istioctl exits 0 for machine-readable output; read the levels instead
    threshold = Level(failure_threshold.value)
    if any(m.level.at_least(threshold) for m in found):
        sys.exit(EXIT_FOUND_ISSUES)
    if parse_messages:
        sys.exit(EXIT_DATA_ERROR)


def _stored(state_dir: Path | None) -> list[Resource]:
    items = trellisd(layout_for(state_dir)).call("GET", "/resources")["items"]
    return [parse_resource(item) for item in items]


def _read_file(filename: str, namespace: str) -> tuple[list[Resource], list[ValidationError]]:
    """Every resource that parses; the problems of those that do not (reported as IST0106)."""
    resources: list[Resource] = []
    problems: list[ValidationError] = []
    try:
        documents = list(yaml.safe_load_all(read_input(filename)))
    except yaml.YAMLError as exc:
        return [], [ValidationError(f"malformed YAML: {exc}; fix the YAML syntax")]
    for index, doc in enumerate(documents, start=1):
        for item in _items(doc):
            try:
                resources.append(parse_resource(_in_namespace(item, namespace), document=index))
            except ValidationErrors as exc:
                problems += exc.errors
            except ValidationError as exc:
                problems.append(exc)
    return resources, problems


def _items(doc: Any) -> Iterator[Any]:
    if doc is None:
        return
    if isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
        yield from (item for item in doc["items"] if item is not None)
    else:
        yield doc


def _in_namespace(doc: Any, namespace: str) -> Any:
    meta = doc.get("metadata") if isinstance(doc, dict) else None
    if isinstance(meta, dict) and not meta.get("namespace"):
        return {**doc, "metadata": {**meta, "namespace": namespace}}
    return doc


def _print(messages: list[Message], fmt: AnalyzeFormat, target: str) -> None:
    data = [m.to_json() for m in messages]
    if fmt is AnalyzeFormat.json:
        print(json.dumps(data, indent=2))
    elif fmt is AnalyzeFormat.yaml:
        print(yaml.safe_dump(data, sort_keys=False), end="")
    elif not messages:
        err_console.print(f"No validation issues found when analyzing {target}.")
    elif fmt is AnalyzeFormat.table:
        _print_table(messages)
    else:
        for message in messages:
            console.print(str(message), markup=False)


def _print_table(messages: list[Message]) -> None:
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for header in ("LEVEL", "CODE", "ORIGIN", "MESSAGE"):
        table.add_column(header)
    for m in messages:
        table.add_row(
            *(Text(cell) for cell in (m.level.value, m.code, m.origin.friendly_name, m.text))
        )
    console.print(table)
