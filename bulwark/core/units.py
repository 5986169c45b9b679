"""Human units on the command line, exact integers on chain.

``parse_units("2.5", 18)`` is ``2_500_000_000_000_000_000``: text goes through :class:`Decimal`,
never a float, and an amount finer than the unit allows is refused rather than rounded.
``format_units`` goes back: exact by default, or rounded half-even to a number of places for tables.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, Decimal, DecimalException, localcontext

from bulwark.core.errors import BulwarkError
from bulwark.core.riskmath import WAD

WAD_DECIMALS = 18

# A generous context: 120 significant digits hold any uint256 with 18 decimals and more.
_PRECISION = 120
# ASCII digits only: Python's \d (and Decimal) would also take Arabic-Indic or full-width digits.
_NUMBER = re.compile(r"[+-]?(\d[\d_]*(\.\d*)?|\.\d+)([eE][+-]?\d+)?", re.ASCII)
# No amount, size or price sent on-chain comes anywhere near this (int256's maximum).
MAX_UNITS = 2**255 - 1
_SHOWN = 40


def _shown(text: object) -> str:
    """Text for an error message, shortened if someone pasted thousands of digits."""
    s = str(text)
    return s if len(s) <= _SHOWN else f"{s[: _SHOWN - 3]}..."


def _plain(value: Decimal) -> str:
    """``0.0000001`` rather than ``1E-7``, unless that would take more than a line (``1e-99999``
    written out is a hundred thousand characters)."""
    if value.is_finite() and abs(value.adjusted()) <= _SHOWN:
        return _shown(f"{value.normalize():f}")
    return _shown(value)


def _significant_digits(value: Decimal) -> int:
    return len("".join(str(d) for d in value.as_tuple().digits).strip("0"))


class UnitError(BulwarkError):
    """Text that is not an acceptable amount, with a message naming what was expected."""


def parse_decimal(text: str, what: str = "value") -> Decimal:
    """A finite decimal number from `text` (``1000``, ``2.5``, ``-0.1``, ``1e3``, ``1_000``)."""
    cleaned = text.strip()
    if not _NUMBER.fullmatch(cleaned) or "__" in cleaned or cleaned.endswith("_"):
        hint = " (leave out thousands separators)" if "," in cleaned else ""
        raise UnitError(f"{what} {_shown(repr(text))} is not a number{hint}")
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        try:
            value = Decimal(cleaned.replace("_", ""))
        except DecimalException:  # an exponent beyond what Decimal holds
            raise UnitError(f"{what} {_shown(cleaned)} is out of range") from None
    if not value.is_finite():
        raise UnitError(f"{what} {text!r} is not a finite number")
    return value


def decimal_to_units(
    value: Decimal, decimals: int, what: str = "value", *, unit: str = "", exact: bool = True
) -> int:
    """``value`` scaled by ``10**decimals``; with ``exact``, finer precision is an error."""
    if _significant_digits(value) > _PRECISION:  # scaling would round it silently
        raise UnitError(f"{what} {_shown(value)} has more digits than any amount needs")
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        try:
            scaled = value.scaleb(decimals)
            whole = scaled.to_integral_value(rounding=ROUND_HALF_EVEN)
        except DecimalException:
            raise UnitError(f"{what} {_shown(value)} is too large") from None
    if whole.copy_abs() > MAX_UNITS:
        raise UnitError(f"{what} {_shown(value)} is too large")
    if exact and whole != scaled:
        unit_text = f" {unit}" if unit else ""
        raise UnitError(
            f"{what} {_plain(value)}{unit_text} has more than {decimals} decimal places"
        )
    return int(whole)


def parse_units(
    text: str,
    decimals: int,
    what: str = "value",
    *,
    unit: str = "",
    allow_negative: bool = False,
    allow_zero: bool = False,
    exact: bool = True,
) -> int:
    """Human text to an integer of ``decimals`` decimals, checked for sign and precision.

    Raises:
        UnitError: not a number, negative or zero where not allowed, or too precise.
    """
    value = parse_decimal(text, what)
    if value < 0 and not allow_negative:
        raise UnitError(f"{what} must not be negative, got {_shown(text.strip())}")
    if value == 0 and not allow_zero:
        raise UnitError(f"{what} must not be zero")
    units = decimal_to_units(value, decimals, what, unit=unit, exact=exact)
    if units == 0 and not allow_zero:
        raise UnitError(f"{what} {_shown(text.strip())} rounds to zero")
    return units


def parse_wad(text: str, what: str = "value", *, allow_negative: bool = False) -> int:
    """Human text to WAD (18 decimals), exactly."""
    return parse_units(text, WAD_DECIMALS, what, allow_negative=allow_negative)


# The highest price the command line sends or publishes (quote per base unit). Positions and
# notionals are int128 on chain: a price far above any real market's overflows them and the chain
# answers SafeCastOverflowedIntDowncast, which says nothing to a person.
MAX_PRICE = 10**12


def check_price(value: int, decimals: int, what: str = "PRICE") -> int:
    """``value`` (with ``decimals`` decimals) if it is at most :data:`MAX_PRICE`, else an error."""
    if value > MAX_PRICE * 10**decimals:
        raise UnitError(
            f"{what} {format_units(value, decimals, 2, group=True)} is above "
            f"{MAX_PRICE:,}, more than any market trades at"
        )
    return value


def to_decimal(value: int, decimals: int = WAD_DECIMALS) -> Decimal:
    """The exact decimal value of an integer with ``decimals`` decimals."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return Decimal(value).scaleb(-decimals)


def format_units(
    value: int,
    decimals: int = WAD_DECIMALS,
    places: int | None = None,
    *,
    group: bool = False,
    sign: bool = False,
) -> str:
    """An integer with ``decimals`` decimals as text.

    ``places=None`` is exact with trailing zeros dropped (``2.5``); ``places=2`` rounds half-even to
    two places (``2.50``). ``group`` adds thousands separators, ``sign`` a ``+`` on positive values.
    """
    exact = to_decimal(value, decimals)
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        if places is None:
            shown = exact.normalize() if exact != 0 else Decimal(0)
            if shown == shown.to_integral_value():
                shown = shown.quantize(Decimal(1))
        else:
            shown = exact.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    if shown.is_zero():
        shown = shown.copy_abs()
        sign = False
    spec = ("+" if sign else "") + ("," if group else "") + "f"
    return format(shown, spec)


def format_wad(
    value: int, places: int | None = None, *, group: bool = False, sign: bool = False
) -> str:
    return format_units(value, WAD_DECIMALS, places, group=group, sign=sign)


def format_percent(ratio_wad: int, places: int = 2) -> str:
    """A WAD ratio as a percentage: ``format_percent(WAD // 40) == '2.50%'``."""
    return format_units(ratio_wad * 100, WAD_DECIMALS, places) + "%"


def wad_ratio(numerator: int, denominator: int) -> int | None:
    """numerator / denominator as a WAD ratio (toward zero); None when the denominator is 0."""
    if denominator == 0:
        return None
    quotient = abs(numerator) * WAD // abs(denominator)
    return quotient if (numerator >= 0) == (denominator > 0) else -quotient
