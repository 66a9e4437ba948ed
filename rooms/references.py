"""Case references: the safety rules every reference keeps, and the operator's own format.

A family room is named after its case reference and room names are not end-to-end encrypted,
so whatever format a council uses (`123456`, `CIN/2026/00042`, `EHM-12345`), a reference must
never be something that could be a person's name: it has no spaces, at least one digit, and 3
to 32 characters of ASCII letters, digits and `- / . _`. Those rules always apply; the
operator's `policy.reference_pattern` can only narrow them.
"""

from __future__ import annotations

import re

REFERENCE_CHARACTERS = "letters, digits and - / . _"
MIN_LENGTH = 3
MAX_LENGTH = 32
SAFETY_RULES = (
    f"{MIN_LENGTH} to {MAX_LENGTH} characters of {REFERENCE_CHARACTERS}, "
    "with at least one digit and no spaces"
)
"""The always-on rules in words, for messages."""

_ALLOWED = re.compile(r"[A-Za-z0-9/._-]*")
_DIGIT = re.compile(r"[0-9]")

DEFAULT_REFERENCE_PATTERN = re.compile(
    rf"(?=[^0-9]*[0-9])[A-Za-z0-9/._-]{{{MIN_LENGTH},{MAX_LENGTH}}}"
)
"""`policy.reference_pattern` when the operator sets none: exactly the safety rules."""

EXAMPLES = ("LDC-2026-0042", "CIN/2026/00042", "EHM-12345", "LDC-TEST-0001", "123456")
"""References in councils' real formats; messages show the first the operator's pattern takes."""


def safety_problem(reference: str) -> str | None:
    """What makes `reference` unsafe as a room name, in the user's terms; None if it is safe."""
    if any(char.isspace() for char in reference):
        return f"it must have no spaces (a case reference is {SAFETY_RULES})"
    if not _ALLOWED.fullmatch(reference):
        return f"it may only have {REFERENCE_CHARACTERS}"
    if not MIN_LENGTH <= len(reference) <= MAX_LENGTH:
        return f"it must be {MIN_LENGTH} to {MAX_LENGTH} characters long"
    if not _DIGIT.search(reference):
        return "it must have at least one digit, so that it can never be someone's name"
    return None


def follows(pattern: re.Pattern[str], reference: str) -> bool:
    """Whether the whole reference (as stored, upper-cased) matches the operator's pattern."""
    return pattern.fullmatch(reference) is not None


def example_for(pattern: re.Pattern[str]) -> str | None:
    """A reference the pattern accepts, to show people; None when none of ours fits."""
    for example in EXAMPLES:
        if safety_problem(example) is None and follows(pattern, example):
            return example
    return None
