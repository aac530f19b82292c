"""docs/security.md cannot rot: every test it names exists, every file it names exists, every
item of the design's security checklist has a row with code and a test, and RFC 8725's
section 3 is covered item by item."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DOC = REPO_ROOT / "docs" / "security.md"
TEST_REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::([\w:]+)`")
FILE_REFERENCE = re.compile(r"`((?:layers|functions|devserver|tests)/[\w/.-]+\.py|template\.yaml)`")
CHECKLIST = [
    "short-lived access tokens",
    "refresh rotation and reuse detection",
    "separate keys",
    "fingerprinting",
    "anomaly monitoring",
    "key rotation",
    "CORS",
    "TLS / HSTS",
    "audit logging without tokens",
    "expiry handling",
]


def doc() -> str:
    return DOC.read_text(encoding="utf-8")


@cache
def defined_names(path: Path) -> frozenset[str]:
    """``name`` for module-level functions and classes, ``Class::method`` for methods."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.add(node.name)
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    names.add(f"{node.name}::{item.name}")
    return frozenset(names)


def test_every_test_the_document_names_exists() -> None:
    references = TEST_REFERENCE.findall(doc())
    assert len(references) > 50
    missing = []
    for relative, name in references:
        path = REPO_ROOT / relative
        if (
            not path.is_file()
            or name not in defined_names(path)
            or not name.split("::")[-1].startswith("test_")
        ):
            missing.append(f"{relative}::{name}")
    assert not missing, "docs/security.md names tests that do not exist:\n" + "\n".join(missing)


def test_every_file_the_document_names_exists() -> None:
    missing = sorted(
        {path for path in FILE_REFERENCE.findall(doc()) if not (REPO_ROOT / path).is_file()}
    )
    assert not missing, missing


def _table_rows(heading: str) -> list[str]:
    section = doc().split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ") and "---" not in line][
        1:
    ]


@pytest.mark.parametrize("item", CHECKLIST)
def test_every_checklist_item_maps_to_code_and_a_test(item: str) -> None:
    rows = [
        row
        for row in _table_rows("The design's security checklist")
        if row.startswith(f"| {item} |")
    ]
    assert len(rows) == 1, f"no row for {item!r}"
    cells = rows[0].split(" | ")
    assert FILE_REFERENCE.search(cells[2]), f"{item}: no code"
    assert TEST_REFERENCE.search(cells[3]), f"{item}: no test"


def test_rfc_8725_section_3_is_covered_item_by_item() -> None:
    sections = {row.split(" | ")[0].strip("| ").split(" ")[0] for row in _table_rows("RFC 8725")}
    assert sections >= {f"3.{n}" for n in range(1, 13)}


@pytest.mark.parametrize("heading", ["RFC 8725", "RFC 9700", "OWASP cheat sheets", "Threat model"])
def test_every_mapping_row_names_a_test(heading: str) -> None:
    for row in _table_rows(heading):
        assert TEST_REFERENCE.search(row), f"{heading}: a row without a test: {row[:80]}"


def test_no_tally_is_typed_by_hand() -> None:
    """The run prints the tallies; a number typed into the docs drifts from the next run."""
    for path in (DOC, REPO_ROOT / "README.md"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"\d+ tried", text), path
        assert "**total**" not in text, path
        assert not re.search(r"\d[\d,]* log lines", text), path


def test_no_claim_that_bearer_only_logout_skips_the_fingerprint() -> None:
    """Finding 6 made bearer-only logout apply the authorizer's binding rule."""
    assert "does not check the fingerprint cookie" not in doc()
