"""Countries as ISO 3166-1 alpha-2 codes (checked against pycountry's ISO tables)."""

from __future__ import annotations

import pycountry

from suanli.errors import ValidationError


def parse_country(value: object, field: str = "country") -> str:
    if not isinstance(value, str) or len(value.strip()) != 2:
        raise ValidationError(f"country must be an ISO 3166-1 alpha-2 code, got {value!r}", field)
    code = value.strip().upper()
    if pycountry.countries.get(alpha_2=code) is None:
        raise ValidationError(f"{code!r} is not an ISO 3166-1 alpha-2 country code", field)
    return code
