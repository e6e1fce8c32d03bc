"""Golden files: input.yaml -> compiled Envoy config, compared with expected.json.

`pytest tests/golden --update-goldens` rewrites the expected files; review their diff.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from golden_case import CASE_FILES, GOLDEN_DIR, case_dirs, load_case, render

from trellis.compiler.consistency import check_consistency

CASES = case_dirs()


@pytest.mark.parametrize("case_dir", CASES, ids=[c.name for c in CASES])
def test_compiled_output_matches_golden(case_dir: Path, request: pytest.FixtureRequest) -> None:
    actual = render(load_case(case_dir).compile())
    expected_file = case_dir / "expected.json"
    if request.config.getoption("--update-goldens"):
        expected_file.write_text(actual)
        return
    assert expected_file.exists(), f"{expected_file} missing; run with --update-goldens"
    assert actual == expected_file.read_text(), (
        f"{case_dir.name}: compiled output differs from expected.json; if the change is "
        "intended, run `pytest tests/golden --update-goldens` and review the diff"
    )


@pytest.mark.parametrize("case_dir", CASES, ids=[c.name for c in CASES])
def test_compiled_output_is_consistent(case_dir: Path) -> None:
    for key, cfg in load_case(case_dir).compile().items():
        assert check_consistency(cfg) == [], key


def test_every_golden_directory_is_a_complete_case() -> None:
    assert CASES, "no golden cases found"
    for case_dir in CASES:
        files = {p.name for p in case_dir.iterdir() if not p.name.startswith(".")}
        assert "input.yaml" in files, f"{case_dir.name}: golden directory without input.yaml"
        assert files <= CASE_FILES, f"{case_dir.name}: files no case uses: {files - CASE_FILES}"
    stray = [p.name for p in GOLDEN_DIR.iterdir() if p.suffix in (".json", ".yaml")]
    assert not stray, f"golden files outside a case directory: {stray}"
