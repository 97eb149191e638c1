"""Points from money: exact decimal arithmetic and the tenant's rounding, no float anywhere."""

from __future__ import annotations

import decimal
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal

_ROUNDING = {"floor": ROUND_FLOOR, "half_up": ROUND_HALF_UP}
HUNDRED = Decimal(100)
# Amounts have up to 12 integer and 12 fraction digits, percents up to 9 digits: their product
# needs ~45 significant digits, well past the default context's 28. 80 leaves room for sums.
_EXACT = decimal.Context(prec=80, rounding=ROUND_HALF_UP)


def award_points(amount: Decimal, percent: Decimal, rounding: str = "floor") -> int:
    """round(amount × percent / 100) to whole points with the tenant's rounding mode."""
    if amount < 0 or percent < 0:
        raise ValueError("amount and percent must not be negative")
    exact = _EXACT.divide(_EXACT.multiply(amount, percent), HUNDRED)
    return int(exact.to_integral_value(rounding=_ROUNDING[rounding], context=_EXACT))


def share(points: int, part: Decimal, whole: Decimal) -> int:
    """round_half_up(points × part / whole), exact at part == whole, never above `points`."""
    if whole <= 0 or part >= whole:
        return points
    exact = _EXACT.divide(_EXACT.multiply(Decimal(points), part), whole)
    return min(points, int(exact.to_integral_value(rounding=ROUND_HALF_UP, context=_EXACT)))


def money(value: Decimal) -> str:
    """A plain decimal string (never exponent notation) for the public contract."""
    text = str(value)  # the same text as format(value, "f") unless it has an exponent
    return format(value, "f") if "E" in text else text
