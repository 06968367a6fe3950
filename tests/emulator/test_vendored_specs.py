"""The OpenAPI documents vendored in klaviyo_emulator/specs/ are the ones its README names."""

from __future__ import annotations

import hashlib
import re

import pytest

from tests.conftest import SPECS_DIR, load_spec, spec_path

REVISIONS = ["2023-10-15", "2026-07-15"]


@pytest.mark.parametrize("revision", REVISIONS)
def test_each_spec_matches_the_sha256_and_revision_its_readme_states(revision: str) -> None:
    spec = load_spec(revision)
    readme = (SPECS_DIR / "README.md").read_text(encoding="utf-8")
    row = next((line for line in readme.splitlines() if line.startswith(f"| `{spec_path(revision).name}`")), None)
    assert row is not None, f"klaviyo_emulator/specs/README.md has no row for {spec_path(revision).name}"
    stated = re.findall(r"`([0-9a-f]{64})`", row)
    assert stated == [hashlib.sha256(spec_path(revision).read_bytes()).hexdigest()], row
    assert spec["info"]["version"] == revision


def test_the_specs_carry_klaviyos_license() -> None:
    text = (SPECS_DIR / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License") and "Copyright (c) 2022 Klaviyo" in text
