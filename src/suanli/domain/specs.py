"""Input records (what a user asks for), validated with pydantic.

The same specs validate a REST body and a row of a fleet file, so both give the same error
naming the same field. Unknown fields are refused (a typo must not pass silently).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from suanli import errors
from suanli.catalog.chips import load_catalog
from suanli.domain import geo, money, names
from suanli.domain.lifecycle import INITIAL_STATES, NodeState

T = TypeVar("T")


def _as_value_error(fn: Callable[[object], T]) -> Callable[[object], T]:
    """Pydantic reports ValueError with the field's location; ours carry a message."""

    def wrapped(value: object) -> T:
        try:
            return fn(value)
        except errors.ValidationError as exc:
            raise ValueError(exc.message) from None

    return wrapped


def _chip(value: object) -> str:
    if not isinstance(value, str):
        raise errors.ValidationError("chip must be a string")
    return load_catalog().get(value).model


def _initial_state(value: NodeState) -> NodeState:
    if value not in INITIAL_STATES:
        allowed = ", ".join(sorted(s.value for s in INITIAL_STATES))
        raise ValueError(f"a new node starts in one of: {allowed}")
    return value


Name = Annotated[str, BeforeValidator(_as_value_error(names.parse_name))]
Country = Annotated[str, BeforeValidator(_as_value_error(geo.parse_country))]
ChipName = Annotated[str, BeforeValidator(_as_value_error(_chip))]
Amount = Annotated[
    Decimal, BeforeValidator(_as_value_error(lambda v: money.parse_amount(v, "amount")))
]
Currency = Annotated[str, BeforeValidator(_as_value_error(lambda v: money.parse_currency(v, "")))]
Label = Annotated[str, Field(max_length=200)]


MAX_INT32 = 2**31 - 1
MAX_INT64 = 2**63 - 1


def _no_nul(value: object) -> None:
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("text must not contain NUL characters")
    if isinstance(value, list | tuple):
        for item in value:
            _no_nul(item)
    if isinstance(value, dict):
        for key, item in value.items():
            _no_nul(key)
            _no_nul(item)


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def _reject_nul(cls, value: object) -> object:
        _no_nul(value)  # databases (PostgreSQL) cannot store NUL in text
        return value


class ChipCostSpec(Spec):
    """The operator's price to us for one accelerator-hour of ``chip`` in a data center."""

    chip: ChipName
    per_accelerator_hour: Amount
    currency: Currency = "CNY"


class DataCenterSpec(Spec):
    name: Name
    country: Country
    region: Label = ""
    city: Label = ""
    operator: Label = ""
    owner_type: Literal["state", "private"]
    costs: list[ChipCostSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_cost_per_chip(self) -> DataCenterSpec:
        seen: set[str] = set()
        for cost in self.costs:
            if cost.chip in seen:
                raise ValueError(f"costs list chip {cost.chip!r} twice")
            seen.add(cost.chip)
        return self


class DataCenterPatch(Spec):
    country: Country | None = None
    region: Label | None = None
    city: Label | None = None
    operator: Label | None = None
    owner_type: Literal["state", "private"] | None = None
    costs: list[ChipCostSpec] | None = None


class NodeSpec(Spec):
    name: Name
    data_center: Name
    chip: ChipName | None = None
    count: int = Field(default=0, ge=0, le=64, description="accelerators in the node")
    memory_gb: int | None = Field(default=None, gt=0, le=4096, description="per accelerator")
    island: Label = ""
    cpu_cores: int | None = Field(default=None, gt=0, le=4096)
    memory_mb: int | None = Field(default=None, gt=0, le=MAX_INT64)
    state: Annotated[NodeState, AfterValidator(_initial_state)] = NodeState.REGISTERED

    @model_validator(mode="after")
    def _chip_and_count(self) -> NodeSpec:
        if self.count > 0 and self.chip is None:
            raise ValueError("a node with accelerators needs a chip")
        if self.count == 0 and self.chip is not None:
            raise ValueError("a node with a chip needs count >= 1")
        return self


class NodePatch(Spec):
    island: Label | None = None
    cpu_cores: int | None = Field(default=None, gt=0, le=4096)
    memory_mb: int | None = Field(default=None, gt=0, le=MAX_INT64)


class StateChange(Spec):
    state: NodeState
    reason: str = Field(min_length=1, max_length=2000)


RpmLimit = Annotated[int | None, Field(default=None, ge=1, le=MAX_INT32)]
TpmLimit = Annotated[int | None, Field(default=None, ge=1, le=MAX_INT64)]


class TenantSpec(Spec):
    name: Name
    display_name: Label = ""
    country: Country
    verified: bool = False
    rpm_limit: RpmLimit = Field(default=None, description="gateway requests per minute")
    tpm_limit: TpmLimit = Field(default=None, description="gateway tokens per minute")


class LimitsPatch(Spec):
    """Change a tenant's or an API key's gateway limits; null removes a limit."""

    rpm_limit: RpmLimit = None
    tpm_limit: TpmLimit = None


class UserSpec(Spec):
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)
    name: Label = ""
    role: Literal["admin", "member"] = "member"


class ApiKeySpec(Spec):
    name: Label = ""
    user: str | None = Field(default=None, description="email of the tenant user it belongs to")
    models: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        default=None, description="when set, the key may call only these models"
    )
    rpm_limit: RpmLimit = Field(default=None, description="gateway requests per minute")
    tpm_limit: TpmLimit = Field(default=None, description="gateway tokens per minute")


class TokenSpec(Spec):
    name: Label = ""
    kind: Literal["admin", "agent"] = "admin"
