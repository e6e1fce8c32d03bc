"""Coverage-guided fuzzing of parse_documents + semantic validation with atheris (libFuzzer).

Not part of pytest (it runs until told to stop). From the repository root:

    .venv/bin/python tests/fuzz/atheris_parse.py -runs=100000
    .venv/bin/python tests/fuzz/atheris_parse.py -max_total_time=600 samples/   # seeded

A crash is any exception other than a clear ValidationError (the same property as
tests/fuzz/test_parse_fuzz.py); libFuzzer writes the input to crash-<sha1> for a regression.
Directories given after the flags are the seed corpus (bookinfo's YAML is a good start).
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # `tests.fuzz` from the root

with atheris.instrument_imports(include=["trellis", "yaml"]):
    from trellis.api.kinds import parse_documents
    from trellis.api.validation import validate_all
    from trellis.errors import ValidationError

from tests.fuzz.test_parse_fuzz import assert_clear


def fuzz_one_input(data: bytes) -> None:
    """Parse the bytes as YAML text; whatever parses is validated as `trellis apply` would."""
    text = atheris.FuzzedDataProvider(data).ConsumeUnicodeNoSurrogates(len(data))
    try:
        validate_all(parse_documents(text))
    except ValidationError as exc:
        assert_clear(exc)


def main() -> None:
    sys.setrecursionlimit(1000)  # the default; deep YAML must be refused, not crash us
    atheris.Setup(sys.argv, fuzz_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
