"""The rules core's arithmetic, computed without a decimal.localcontext per call, gives what the
context-managed formulas give, for any amount and percent the parser lets in."""

from __future__ import annotations

import decimal
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal

from hypothesis import example, given
from hypothesis import strategies as st

from schemas.rules.arithmetic import award_points, share
from schemas.rules.arithmetic import money as _money

_EXACT = decimal.Context(prec=80, rounding=ROUND_HALF_UP)
_MODES = {"floor": ROUND_FLOOR, "half_up": ROUND_HALF_UP}

# what schemas.inbound lets through: up to 12 integer and 12 fraction digits, never negative
amounts = st.decimals(min_value=0, max_value=Decimal("999999999999.999999999999"), places=12)
percents = st.decimals(min_value=0, max_value=100, places=4)
money = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False),
    st.decimals(min_value=-(10**30), max_value=10**30, allow_nan=False, allow_infinity=False),
    st.builds(Decimal, st.sampled_from(["1E+3", "0E-8", "-0", "1.50", "0.0000001", "12E-2"])),
)


def _points_then(amount: Decimal, percent: Decimal, rounding: str) -> int:
    with decimal.localcontext(_EXACT):
        return int((amount * percent / Decimal(100)).to_integral_value(rounding=_MODES[rounding]))


def _share_then(points: int, part: Decimal, whole: Decimal) -> int:
    if whole <= 0 or part >= whole:
        return points
    with decimal.localcontext(_EXACT):
        value = (Decimal(points) * part / whole).to_integral_value(rounding=ROUND_HALF_UP)
    return min(points, int(value))


@given(amounts, percents, st.sampled_from(["floor", "half_up"]))
@example(Decimal("999999999999.999999999999"), Decimal("99.9999"), "half_up")
@example(Decimal("0.5"), Decimal(100), "floor")
def test_award_points_as_with_the_exact_context(amount, percent, rounding):
    assert award_points(amount, percent, rounding) == _points_then(amount, percent, rounding)


@given(st.integers(0, 10**12), amounts, amounts)
def test_share_as_with_the_exact_context(points, part, whole):
    assert share(points, part, whole) == _share_then(points, part, whole)


@given(money)
def test_money_is_the_plain_notation(value):
    assert _money(value) == format(value, "f")
    assert "E" not in _money(value)
