#!/usr/bin/env python3
"""The Customer model, mapped from a QuickBooks customer by the documented rules.

This is the independent fake's own reading of the model, written from the
documentation, not from the product's code nor from its expected file
(tests/fixtures/qbo-customers-page.expected.json, which this directory never
reads). The sources, field by field:

- docs/quickbooks.md, "The Customer model" (the table and the address
  paragraph), and docs/sync.md, "Exact money";
- the seed: Nango's QuickBooks `customers` sync, whose mapper
  (integrations/quickbooks/mappers/to-customer.ts in NangoHQ/integration-templates)
  gives the field list: id, given_name, display_name, active, balance_cents,
  taxable, primary_email, primary_phone, bill_address, ship_address
  (city, line1, postal_code, country, id), created_at, updated_at, with
  `?? null` for the optional ones and `new Date(...).toISOString()` (UTC, with
  milliseconds, `Z`) for the two timestamps;
- Intuit's Customer entity (Accounting API, "Customer"): `Id` (string),
  `GivenName`, `DisplayName` (strings), `Active` and `Taxable` (booleans),
  `Balance` (decimal), `PrimaryEmailAddr.Address`, `PrimaryPhone.FreeFormNumber`,
  `BillAddr` and `ShipAddr` (PhysicalAddress: `Id`, `Line1`..`Line5`, `City`,
  `Country`, `CountrySubDivisionCode`, `PostalCode`, `Lat`, `Long`) and
  `MetaData.CreateTime` / `MetaData.LastUpdatedTime` (dateTime with offset).

Where the seed and the project's documentation differ, the documentation
rules (it is what the product claims), and the difference is named below:

- `balance_cents`: the seed multiplies a float (`Balance * 100`, so 314.28
  gives 31427.999999999996); the documentation wants the exact decimal text,
  rounded half away from zero on more than two decimals, and 0 when absent.
- `active` absent: the seed leaves it undefined; the documentation says true.
- `taxable` absent: the seed leaves it undefined; the documentation says false.
- an address `Id` absent: the seed leaves it undefined; the documentation
  says "" (the empty string).
- `display_name` absent: the seed leaves it undefined; the documentation says
  null.

Usage:
    customer_model.py --write   regenerate expected/customers-page.mapped.json from the recorded page
    customer_model.py --check   exit 1 if that file is not what the rules give
"""
from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation, ROUND_HALF_UP
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
# The recorded sandbox page (33 customers): the input, not an expectation.
RECORDED_PAGE = ROOT / "tests/fixtures/qbo-customers-page.json"
# This directory's own expectation of it.
MAPPED_PAGE = HERE / "expected/customers-page.mapped.json"

I64 = (-(2 ** 63), 2 ** 63 - 1)


class MappingError(ValueError):
    pass


def cents(balance: Any, cid: str) -> int:
    """`Balance` × 100, exact from its decimal text (docs/sync.md, "Exact money").

    Accepts the number's own text, an int or a Decimal (a JSON number read
    with parse_float=Decimal), or a string; never a float, whose value is no
    longer the text QuickBooks sent. Python's ROUND_HALF_UP rounds a tie away
    from zero, which is the documented rule (1.005 → 101, -12.345 → -1235).
    """
    if balance is None:
        return 0                                      # "An absent `Balance` is `0`."
    if isinstance(balance, bool) or isinstance(balance, float):
        raise MappingError(f"customer {cid}: Balance {balance!r} is not exact decimal text")
    try:
        d = Decimal(balance) if isinstance(balance, (int, Decimal)) else Decimal(str(balance).strip())
    except InvalidOperation:
        raise MappingError(f"customer {cid}: Balance {balance!r} is not a decimal number")
    if not d.is_finite():
        raise MappingError(f"customer {cid}: Balance {balance!r} is not a decimal number")
    c = int((d * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    if not I64[0] <= c <= I64[1]:
        raise MappingError(f"customer {cid}: Balance {balance!r} is outside 64-bit cents")
    return c


def utc_millis(text: Any, what: str, cid: str) -> str:
    """An RFC 3339 timestamp with an offset, as UTC `YYYY-MM-DDTHH:MM:SS.mmmZ`.

    QuickBooks' timestamps have one-second resolution, so the milliseconds
    are `.000`; a finer fraction would be truncated to the millisecond, as the
    seed's `Date.toISOString()` does (the documentation does not say).
    """
    if not isinstance(text, str):
        raise MappingError(f"customer {cid}: {what} missing")
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise MappingError(f"customer {cid}: {what} {text!r} is not a timestamp")
    if dt.tzinfo is None:
        raise MappingError(f"customer {cid}: {what} {text!r} has no offset")
    u = dt.astimezone(timezone.utc)
    return u.strftime("%Y-%m-%dT%H:%M:%S.") + f"{u.microsecond // 1000:03d}Z"


def _text(v: Any) -> Optional[str]:
    # Strings are kept as they are; absent (or null) is null.
    return v if isinstance(v, str) else None


def _sub(c: dict, obj: str, key: str) -> Optional[str]:
    o = c.get(obj)
    return _text(o.get(key)) if isinstance(o, dict) else None


def address(a: Any) -> Optional[dict]:
    """A PhysicalAddress: city, country, id ("" when absent), line1, postal_code."""
    if not isinstance(a, dict):
        return None
    return {
        "city": _text(a.get("City")),
        "country": _text(a.get("Country")),
        "id": a.get("Id") if isinstance(a.get("Id"), str) else "",
        "line1": _text(a.get("Line1")),
        "postal_code": _text(a.get("PostalCode")),
    }


def map_customer(c: dict) -> dict:
    """One QuickBooks customer (parsed with parse_float=Decimal) as a Customer record."""
    cid = c.get("Id")
    if not isinstance(cid, str) or not cid:
        raise MappingError(f"customer without an Id: {c!r:.80}")
    meta = c.get("MetaData") or {}
    active = c.get("Active")
    taxable = c.get("Taxable")
    return {
        "active": True if active is None else bool(active),
        "balance_cents": cents(c.get("Balance"), cid),
        "bill_address": address(c.get("BillAddr")),
        "created_at": utc_millis(meta.get("CreateTime"), "MetaData.CreateTime", cid),
        "display_name": _text(c.get("DisplayName")),
        "given_name": _text(c.get("GivenName")),
        "id": cid,
        "primary_email": _sub(c, "PrimaryEmailAddr", "Address"),
        "primary_phone": _sub(c, "PrimaryPhone", "FreeFormNumber"),
        "ship_address": address(c.get("ShipAddr")),
        "taxable": False if taxable is None else bool(taxable),
        "updated_at": utc_millis(meta.get("LastUpdatedTime"), "MetaData.LastUpdatedTime", cid),
    }


def read_page(text: str) -> list[dict]:
    """The customers of a query answer, numbers kept exact."""
    return json.loads(text, parse_float=Decimal)["QueryResponse"]["Customer"]


def mapped_page() -> list[dict]:
    return [map_customer(c) for c in read_page(RECORDED_PAGE.read_text())]


def render(records: list[dict]) -> str:
    return json.dumps(records, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def self_check() -> None:
    """The documented examples."""
    ex = {"Id": "1", "MetaData": {"CreateTime": "2026-03-31T16:49:28-07:00",
                                  "LastUpdatedTime": "2026-03-31T16:49:28-07:00"}}
    assert map_customer(ex)["created_at"] == "2026-03-31T23:49:28.000Z"
    for text, want in [("314.28", 31428), ("78.6", 7860), ("1.005", 101), ("-12.345", -1235),
                       ("0.004999", 0), ("2.5e1", 2500), ("-15", -1500), ("0", 0)]:
        got = map_customer(dict(ex, Balance=Decimal(text)))["balance_cents"]
        assert got == want, (text, got, want)
    m = map_customer(ex)
    assert (m["active"], m["taxable"], m["balance_cents"], m["bill_address"], m["display_name"]) == (
        True, False, 0, None, None)
    assert map_customer(dict(ex, BillAddr={"City": "X"}))["bill_address"] == {
        "city": "X", "country": None, "id": "", "line1": None, "postal_code": None}
    for bad in [dict(ex, Balance=1.5), dict(ex, Balance="ten"), dict(ex, Id=""), {"Id": "2"}]:
        try:
            map_customer(bad)
        except MappingError:
            pass
        else:
            raise AssertionError(bad)


def main(argv: list[str]) -> int:
    self_check()
    want = render(mapped_page())
    if argv == ["--write"]:
        MAPPED_PAGE.parent.mkdir(exist_ok=True)
        MAPPED_PAGE.write_text(want)
        print(f"wrote {MAPPED_PAGE}")
        return 0
    if argv == ["--check"]:
        if not MAPPED_PAGE.exists() or MAPPED_PAGE.read_text() != want:
            print(f"{MAPPED_PAGE} is not what the rules give: run {Path(__file__).name} --write", file=sys.stderr)
            return 1
        print("mapped page ok")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
