"""Regexes checked the way Envoy will check them: RE2 syntax and RE2's program-size limit.

Envoy compiles every `safe_regex` with RE2, which has no look-around, no back-references and
caps counted repetition at 1000; Python's `re` accepts all three, so validating with `re` let
patterns through that Envoy then NACKed. Envoy also rejects a pattern whose compiled RE2
program is larger than its runtime key `re2.max_program_size.error_level` (default 100; the
bootstrap Trellis writes does not raise it). Both are checked here with the real RE2 library
(google-re2), so what passes `trellis apply` compiles in Envoy.
"""

from __future__ import annotations

import re2

ENVOY_MAX_PROGRAM_SIZE = 100
"""Envoy's default `re2.max_program_size.error_level` (measured with Envoy 1.40)."""

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 would also print every rejected pattern on stderr


def re2_problem(pattern: str) -> str | None:
    """Why Envoy would reject `pattern`, or None when it compiles within Envoy's limits."""
    try:
        compiled = re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        return f"regex {pattern!r} is not valid RE2 (Envoy's regex engine): {detail}"
    size = int(compiled.programsize)
    if size > ENVOY_MAX_PROGRAM_SIZE:
        return (
            f"regex {pattern!r} is too complex for Envoy: its RE2 program size is {size}, "
            f"Envoy's limit is {ENVOY_MAX_PROGRAM_SIZE}; simplify it (fewer alternatives or "
            "repetitions)"
        )
    return None
