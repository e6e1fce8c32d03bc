"""`trellis analyze`: Istio's analyzer messages (IST codes) over stored and local config.

Pure functions over parsed resources and registry services, so the CLI and the console share
them: `analyze(resources, services)` returns every message, sorted; `Message.to_json()` has the
shape of `istioctl analyze -o json`.
"""

from trellis.analyze.context import AnalysisContext
from trellis.analyze.messages import ALL_TYPES, Level, Message, MessageType, Origin
from trellis.analyze.runner import analyze, parse_problem_messages

__all__ = [
    "ALL_TYPES",
    "AnalysisContext",
    "Level",
    "Message",
    "MessageType",
    "Origin",
    "analyze",
    "parse_problem_messages",
]
