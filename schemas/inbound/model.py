"""The base of every inbound wire model: field names in any case, blanks as absent, and
pydantic's errors turned into the one `InboundError` that names the field as it was sent.

Shops send ``Email``, ``EMAIL`` or ``email``; a blank value never hides a non-blank one under
another spelling. Each model's pre-validator (`InboundModel.prepare`) reads the object it is
given onto its field names (`names`: the lower-case keys each field may arrive under), so the
fields' own validators see one value each; where each field is read is kept per tuple of keys
(`plan`), as shops send the same keys body after body. A field's error is located again in
the raw body the same way (`refusal`): ``payload.purchases[3].orderId``, ``Phone``,
``[1].payment.amount``, with the keys as the shop spelt them, and the field's own name when it
is missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from schemas.errors import InboundError
from schemas.inbound.fields import invalid

Hit = tuple[str, Any]  # (the key as sent, its value)
# per model, per tuple of keys as sent: (field, the keys it may be read from, in order)
Plan = tuple[tuple[str, tuple[str, ...]], ...]
MAX_PLANS = 1024
MAX_PLAN_KEYS = 64


def is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def fold(obj: Mapping[str, Any]) -> dict[str, Hit]:
    """Lower-case key -> (key as sent, value); a blank value never hides a non-blank one."""
    items: dict[str, Hit] = {}
    for key, value in obj.items():
        seen = items.get(key.lower())
        if seen is None or (is_blank(seen[1]) and not is_blank(value)):
            items[key.lower()] = (key, value)
    return items


class Prepared(dict[str, Any]):
    """Values a parent's pre-validator already read for a child model, by field name."""


class InboundModel(BaseModel):
    """A JSON object of an inbound format; extra fields are allowed and ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    # field -> the lower-case keys it may arrive under, in order of preference (default: its
    # own name); hidden fields (`fields.Check`) are listed in `hidden` and read no key
    aliases: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    hidden: ClassVar[frozenset[str]] = frozenset()
    # field -> (code, reason) when it is absent (default: missing_field, "<field> is required")
    missing: ClassVar[Mapping[str, tuple[str, str]]] = {}
    # fields holding an object or array of objects -> that object's model (to locate errors)
    children: ClassVar[Mapping[str, type[InboundModel]]] = {}
    # hidden fields validated from a value sent elsewhere -> where it was sent (for errors)
    moved: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    names: ClassVar[dict[str, tuple[str, ...]]] = {}
    # shops send the same keys body after body: where each field is read, by tuple of keys
    plans: ClassVar[dict[tuple[str, ...], Plan]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls.names = {
            field: cls.aliases.get(field, (field.lower(),))
            for field in cls.model_fields
            if field not in cls.hidden
        }
        cls.plans = {}

    @classmethod
    def plan(cls, keys: tuple[str, ...]) -> Plan:
        """Where each field present is read, for an object with these keys."""
        plan = cls.plans.get(keys)
        if plan is None:
            lowered = [(key, key.lower()) for key in keys]
            plan = tuple(
                (field, found)
                for field, names in cls.names.items()
                if (found := tuple(k for n in names for k, low in lowered if low == n))
            )
            if len(keys) <= MAX_PLAN_KEYS:  # a form of 50,000 fields is not kept
                if len(cls.plans) >= MAX_PLANS:
                    cls.plans.clear()
                cls.plans[keys] = plan
        return plan

    @classmethod
    def hits(cls, obj: dict[str, Any]) -> dict[str, Hit]:
        """Field -> (key as sent, value) of each field present with a non-blank value."""
        found: dict[str, Hit] = {}
        for field, keys in cls.plan(tuple(obj)):
            for key in keys:
                value = obj[key]
                if value is not None and not (isinstance(value, str) and not value.strip()):
                    found[field] = (key, value)
                    break
        return found

    @classmethod
    def values(cls, obj: dict[str, Any]) -> dict[str, Any]:
        """Field -> value of each field present with a non-blank value."""
        found: dict[str, Any] = {}
        for field, keys in cls.plan(tuple(obj)):
            for key in keys:
                value = obj[key]
                if value is not None and not (isinstance(value, str) and not value.strip()):
                    found[field] = value
                    break
        return found

    @model_validator(mode="before")
    @classmethod
    def _prepared(cls, data: Any) -> Any:
        return cls.prepare_any(data)

    @classmethod
    def prepare_any(cls, data: Any) -> dict[str, Any]:
        """An object's values by field name; anything but an object is refused."""
        if not isinstance(data, dict):
            raise invalid("must be an object", "")
        if isinstance(data, Prepared):
            return data
        return cls.prepare(data)

    @classmethod
    def prepare(cls, data: dict[str, Any]) -> dict[str, Any]:
        """The values the fields validate, by field name; subclasses add their quirks."""
        return cls.values(data)

    @classmethod
    def raw_child(cls, field: str, value: Any) -> Any:
        """The raw value a child model was validated from (a field that arrives as a JSON
        string of an object parses it here); used only to locate an error."""
        return value


def refusal(
    exc: ValidationError, model: type[InboundModel], raw: Any, prefix: Sequence[str | int] = ()
) -> InboundError:
    """The InboundError of the first of `exc`'s errors (pydantic lists them in field order).

    `raw` is what `model` validated, or holds it at `prefix` (a batch item validated alone:
    ``("payload", "purchases", 3)`` in the body the batch's model validated)."""
    first = exc.errors(include_url=False)[0]
    loc = (*prefix, *first["loc"])
    return located(first["type"], first.get("ctx") or {}, first["msg"], model, raw, loc)


def located(
    kind: str,
    ctx: Mapping[str, Any],
    msg: str,
    model: type[InboundModel],
    raw: Any,
    loc: Sequence[str | int],
) -> InboundError:
    """Walk `loc` through `raw` with each model's fold: the path with the keys as sent."""
    path, node = "", raw
    cls: type[InboundModel] | None = model
    owner, last = model, ""
    parts = list(reversed(loc))
    while parts:
        part = parts.pop()
        if isinstance(part, str) and cls is not None and part in cls.moved:
            parts.extend(reversed(cls.moved[part]))
            continue
        if isinstance(part, int):
            path += f"[{part}]"
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            continue
        if cls is None or part not in cls.names:
            continue  # a hidden field: its refusal names its path itself
        hit = cls.hits(node).get(part) if isinstance(node, dict) else None
        path = join(path, hit[0] if hit else part)
        owner, last = cls, part
        node = cls.raw_child(part, hit[1]) if hit else None
        cls = cls.children.get(part)
    if kind == "missing":
        code, reason = owner.missing.get(last, ("missing_field", f"{last} is required"))
        return InboundError(422, code, reason, path)
    if "reason" not in ctx:  # one of pydantic's own errors: no field type raises them
        return InboundError(422, "invalid_field", msg, path or None)
    field = join(path, ctx["path"]) if "path" in ctx else path
    return InboundError(422, kind, ctx["reason"], field or None)


def join(path: str, name: str) -> str:
    if not path or not name:
        return path or name
    return path + name if name.startswith("[") else f"{path}.{name}"
