"""Names of resources: short, printable, usable in URLs and shell commands."""

from __future__ import annotations

import re

from suanli.errors import ValidationError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def parse_name(value: object, field: str = "name") -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValidationError(
            f"{value!r} is not a valid name: 1-63 characters of letters, digits, '.', '_', '-',"
            " starting with a letter or digit",
            field,
        )
    return value
