"""A tenant's loyalty rules: the one model the CLI, the admin API, Postgres and Kafka all share.

Rules live in Postgres (`tenant_rules`, the source of truth, with a revision number) and travel to
every worker on the compacted topic `tenants.rules` (key tenant_id). Commands carry the rules as
they stood when the command was made, so a change applies to what is processed after it and a
replay of an old command gives the old result.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Percent = Decimal


class Level(BaseModel):
    """One loyalty level: reached once lifetime spend is at least `min_lifetime_spend`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    min_lifetime_spend: Decimal = Field(ge=0, max_digits=24, decimal_places=4)
    bonus_percent: Percent = Field(ge=0, le=100, max_digits=9, decimal_places=4)


class TenantRules(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    base_percent: Percent = Field(Decimal(5), ge=0, le=100, max_digits=9, decimal_places=4)
    levels: tuple[Level, ...] = Field(
        (), description="ordered by min_lifetime_spend; the level % adds to the base %"
    )
    referral_percent: Percent = Field(Decimal(0), ge=0, le=100, max_digits=9, decimal_places=4)
    referral_mode: Literal["first_purchase", "every_purchase"] = "first_purchase"
    bonus_ttl_days: int = Field(365, ge=1, le=36500)
    hold_days: int = Field(0, ge=0, le=3650)
    max_spend_percent: Percent = Field(Decimal(100), ge=0, le=100, max_digits=9, decimal_places=4)
    rounding: Literal["floor", "half_up"] = "floor"
    phone_region: str = "RU"
    timezone: str = "Europe/Moscow"

    @field_validator("phone_region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        value = value.strip().upper()
        if value not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown phone region {value!r}; use an ISO 3166 code like RU")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name") from None
        return value

    @model_validator(mode="after")
    def _levels_ordered(self) -> TenantRules:
        names = [level.name for level in self.levels]
        if len(set(names)) != len(names):
            raise ValueError("level names must be unique")
        spends = [level.min_lifetime_spend for level in self.levels]
        if spends != sorted(spends) or len(set(spends)) != len(spends):
            raise ValueError("levels must be ordered by strictly growing min_lifetime_spend")
        return self

    def level_for(self, lifetime_spend: Decimal) -> Level | None:
        """The highest level whose threshold the lifetime spend reaches (None: below all)."""
        reached = None
        for level in self.levels:
            if lifetime_spend >= level.min_lifetime_spend:
                reached = level
        return reached

    def next_level(self, lifetime_spend: Decimal) -> Level | None:
        return next((lv for lv in self.levels if lv.min_lifetime_spend > lifetime_spend), None)

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()
