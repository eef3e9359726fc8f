"""YAML documents validated by pydantic models, with errors that name the field and line."""

from __future__ import annotations

from typing import Any, TypeVar

import pydantic
import yaml

from suanli.errors import ValidationError

Loc = tuple[str | int, ...]
Lines = dict[Loc, int]
M = TypeVar("M", bound=pydantic.BaseModel)


def format_path(loc: Loc) -> str:
    """("data_centers", 1, "nodes", 0, "chip") -> "data_centers[1].nodes[0].chip"."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def line_for(lines: Lines, loc: Loc) -> int | None:
    """The line of ``loc``, or of its nearest parent that has one."""
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines:
            return lines[loc[:cut]]
    return None


def _line_map(root: yaml.Node | None) -> Lines:
    out: Lines = {}

    def walk(node: yaml.Node, path: Loc) -> None:
        out.setdefault(path, node.start_mark.line + 1)  # a key's own line beats its value's
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                out[(*path, str(key.value))] = key.start_mark.line + 1
                walk(value, (*path, str(key.value)))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    if root is not None:
        walk(root, ())
    return out


class _NoAliasLoader(yaml.SafeLoader):
    """Safe YAML without anchors/aliases: configuration needs none, and nested aliases can
    make a few hundred bytes expand without bound."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed here", event.start_mark
            )
        return super().compose_node(parent, index)


def parse_yaml(text: str, what: str) -> tuple[Any, Lines]:
    """Parse ``text``; a syntax error names its line."""
    try:
        root = yaml.compose(text, Loader=_NoAliasLoader)
        data = yaml.load(text, Loader=_NoAliasLoader)
        return data, _line_map(root)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ValidationError(f"{what} is not valid YAML: {exc}", None, line) from None
    except (ValueError, RecursionError) as exc:  # e.g. a date such as 2024-13-45
        raise ValidationError(f"{what} has a value YAML cannot read: {exc}") from None


def error_at(message: str, loc: Loc, lines: Lines) -> ValidationError:
    return ValidationError(message, format_path(loc) or None, line_for(lines, loc))


def data_loc(data: Any, loc: Loc) -> Loc:
    """``loc`` as a path through ``data``: pydantic puts the tag of the union member it tried
    (``list[...]``, ``function-before[...]``) into error locations; those are dropped."""
    out: list[str | int] = []
    cur = data
    for i, part in enumerate(loc):
        if isinstance(cur, dict) and part in cur:  # noqa: SIM114 (separate for mypy)
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            cur = cur[part]
        elif isinstance(cur, dict) and i == len(loc) - 1 and isinstance(part, str):
            pass  # a missing field: name it
        else:
            continue  # a union member's tag
        out.append(part)
    return tuple(out)


def validate(model: type[M], data: Any, lines: Lines, prefix: Loc = ()) -> M:
    """``model.model_validate(data)``; the first error names its field and line."""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        places = [data_loc(data, tuple(e["loc"])) for e in exc.errors()]
        # A union reports one error per member; the deepest place is the one that says most.
        first = places[0]
        pick = max(
            (i for i, p in enumerate(places) if p[: len(first)] == first or first[: len(p)] == p),
            key=lambda i: len(places[i]),
        )
        loc = (*prefix, *places[pick])
        msg = exc.errors()[pick]["msg"].removeprefix("Value error, ")
        distinct = {p for p in places if not any(q != p and q[: len(p)] == p for q in places)}
        more = f" (and {len(distinct) - 1} more errors)" if len(distinct) > 1 else ""
        where = format_path(loc)
        text = f"{where}: {msg}{more}" if where else f"{msg}{more}"
        raise error_at(text, loc, lines) from None
