"""The agent's structured log: one event per line, key=value, to stderr."""

from __future__ import annotations

import logging
import sys
import time

LOGGER_NAME = "trellis.agent"


def logfmt_value(value: object) -> str:
    """Quote a value only when it needs it, so lines stay grep-able."""
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n\t'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def logfmt_line(level: str, event: str, fields: dict[str, object]) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    parts = [f"ts={stamp}Z", f"level={level}", f"event={logfmt_value(event)}"]
    parts += [f"{key}={logfmt_value(value)}" for key, value in fields.items()]
    return " ".join(parts)


class _LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", {})
        return logfmt_line(record.levelname.lower(), record.getMessage(), fields)


def configure_logging(level: int = logging.INFO) -> None:
    """Send the agent's events to stderr as logfmt (called once, by main)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogfmtFormatter())
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


def log_event(event: str, *, level: int = logging.INFO, **fields: object) -> None:
    """Log one event with its fields (e.g. `log_event("envoy_started", pid=12)`)."""
    logging.getLogger(LOGGER_NAME).log(level, event, extra={"fields": fields})
