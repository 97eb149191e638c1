"""Customer identity normalisation: one customer, one email, one E.164 phone."""

from __future__ import annotations

from functools import lru_cache

import phonenumbers

MAX_EMAIL_LENGTH = 254
MAX_PHONE_LENGTH = 64


def normalize_email(raw: str) -> str:
    """Strip and lower-case an email; raise ValueError when it does not look like one."""
    if not isinstance(raw, str):
        raise ValueError("email must be a string")
    email = raw.strip().lower()
    if not email:
        raise ValueError("email is empty")
    if len(email) > MAX_EMAIL_LENGTH:
        raise ValueError(f"email is longer than {MAX_EMAIL_LENGTH} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in email):
        raise ValueError("email must not contain spaces or control characters")
    if email.count("@") != 1:
        raise ValueError("email must contain exactly one '@'")
    local, _, domain = email.partition("@")
    if not local:
        raise ValueError("email has nothing before '@'")
    if "." not in domain or domain.startswith(".") or domain.endswith(".") or ".." in domain:
        raise ValueError("email domain must look like example.com")
    return email


def normalize_phone(raw: str, region: str = "RU") -> str:
    """Parse a phone with `phonenumbers` in a default region and return it in E.164.

    Raise ValueError when it is not a possible number. A bare international number without
    its '+' (``79991234567``, ``4930123456``) is retried with one.
    """
    if not isinstance(raw, str):
        raise ValueError("phone must be a string")
    return _e164(raw.strip(), region.upper())


@lru_cache(maxsize=65_536)
def _e164(text: str, region: str) -> str:
    """normalize_phone's work, remembered for recent phones: the same phone is normalised by
    the ingress, then by the worker once to create new customers together and once more to
    resolve each (a failure, ValueError, is not remembered)."""
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown phone region {region[:8]!r}")
    if not text:
        raise ValueError("phone is empty")
    if len(text) > MAX_PHONE_LENGTH:
        raise ValueError(f"phone is longer than {MAX_PHONE_LENGTH} characters")
    if any(ch.isalpha() for ch in text):
        raise ValueError("phone must not contain letters")
    number = _possible(text, region)
    if number is None and not text.startswith("+"):
        number = _possible("+" + text, None)
    if number is None:
        raise ValueError(f"not a possible phone number (default region {region})")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def _possible(text: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    """The parsed number if `phonenumbers` finds it possible, else None."""
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_possible_number(number) else None
