"""Identity normalisation: phones to E.164, emails to lower case."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.identity import normalize_email, normalize_phone


@pytest.mark.parametrize(
    "raw",
    [
        "8 (999) 123-45-67",
        "+7 999 123 45 67",
        "+7 (999) 123-45-67",
        "79991234567",
        "89991234567",
        "9991234567",
        "  +7-999-123-45-67  ",
    ],
)
def test_russian_spellings_are_one_number(raw: str) -> None:
    assert normalize_phone(raw) == "+79991234567"


def test_other_default_region() -> None:
    assert normalize_phone("030 1234567", "DE") == "+49301234567"
    assert normalize_phone("030 1234567", region="de") == "+49301234567"


def test_explicit_country_code_wins_over_region() -> None:
    assert normalize_phone("+49 30 1234567") == "+49301234567"
    assert normalize_phone("+7 999 123 45 67", "DE") == "+79991234567"


@pytest.mark.parametrize(
    "raw", ["", "   ", "123", "abc", "+7 999 CALL ME", "1" * 80, "++", "8 (999)"]
)
def test_junk_phone_raises(raw: str) -> None:
    with pytest.raises(ValueError):
        normalize_phone(raw)


def test_unknown_region_raises() -> None:
    with pytest.raises(ValueError, match="region"):
        normalize_phone("89991234567", "XX")


def test_email_is_stripped_and_lower_cased() -> None:
    assert normalize_email("  Ivan.Petrov@Example.COM ") == "ivan.petrov@example.com"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "ivan",
        "ivan@",
        "@example.com",
        "ivan@example",
        "ivan@@example.com",
        "a@b@example.com",
        "iv an@example.com",
        "ivan@.example.com",
        "ivan@example.com.",
        "ivan@example..com",
        "x" * 250 + "@example.com",
    ],
)
def test_bad_email_raises(raw: str) -> None:
    with pytest.raises(ValueError):
        normalize_email(raw)


@given(st.emails() | st.text(max_size=40))
def test_normalize_email_is_idempotent(raw: str) -> None:
    try:
        once = normalize_email(raw)
    except ValueError:
        return
    assert normalize_email(once) == once
