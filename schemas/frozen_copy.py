"""Frozen pydantic models built without validation, for hot paths.

`constructed(cls, **values)` is `cls.model_construct(**values)` for models without aliases,
private attributes or extra fields, without the per-field alias search: values the caller
already checked (the parser's own, checked by hand). Unknown names are an error, not dropped.

It keeps the model's field order, so the model serialises byte for byte like pydantic's own
(tests/schemas/test_frozen_copy.py). (The ledger's table entries, copied four or five times per
command, are msgspec structs: schemas.rules.state.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)
_set = object.__setattr__
_UNSET: Any = object()
# per model: (its fields in order with their defaults, the required names, the fields with a
# default factory), or None when the model needs model_construct's general path
_Plan = tuple[dict[str, Any], frozenset[str], tuple[tuple[str, Callable[..., Any]], ...]]
_PLANS: dict[type, _Plan | None] = {}


def constructed(cls: type[M], **values: Any) -> M:
    """`cls.model_construct(**values)`: fields not given take their defaults."""
    plan = _PLANS.get(cls, _UNSET)
    if plan is _UNSET:
        plan = _PLANS[cls] = _plan(cls)
    if plan is None:
        return cls.model_construct(**values)
    template, required, factories = plan
    fields = template.copy()  # the model's field order, whatever the order of `values`
    fields.update(values)
    if len(fields) != len(template) or not required <= values.keys():
        unknown, missing = set(values) - set(template), required - values.keys()
        raise TypeError(f"{cls.__name__}: unknown {sorted(unknown)}, missing {sorted(missing)}")
    for name, factory in factories:
        if name not in values:
            fields[name] = factory()
    model = cls.__new__(cls)
    _set(model, "__dict__", fields)
    _set(model, "__pydantic_fields_set__", set(values))
    _set(model, "__pydantic_extra__", None)
    _set(model, "__pydantic_private__", None)
    return model


def _plan(cls: type[BaseModel]) -> _Plan | None:
    if (
        cls.__pydantic_root_model__
        or cls.__pydantic_post_init__
        or cls.__private_attributes__
        or cls.model_config.get("extra") == "allow"
    ):
        return None
    template: dict[str, Any] = {}
    required, factories = set(), []
    for name, field in cls.__pydantic_fields__.items():
        if field.alias is not None or field.validation_alias is not None:
            return None
        if field.default_factory is not None:
            if field.default_factory_takes_validated_data:
                return None
            factories.append((name, field.default_factory))
        elif field.is_required():
            required.add(name)
        template[name] = None if name in required or field.default_factory else field.default
    return template, frozenset(required), tuple(factories)
