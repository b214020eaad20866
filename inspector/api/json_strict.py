"""JSON type strictness for request bodies: a dependency that refuses values whose JSON type the body's schema does
not allow (`false` or `"0.5"` for a number), which FastAPI's lax pydantic validation would coerce."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

__all__ = ["strict"]

_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "null": lambda v: v is None,
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def _type_errors(value: Any, schema: dict[str, Any], defs: dict[str, Any], loc: tuple[Any, ...]) -> list[dict]:
    """Where `value` has a JSON type its JSON schema does not allow (types only: pydantic checks the rest)."""
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    if "anyOf" in schema:
        options = [_type_errors(value, option, defs, loc) for option in schema["anyOf"]]
        return [] if any(not errors for errors in options) else min(options, key=len)
    kind = schema.get("type")
    if kind is not None and not _JSON_TYPES[kind](value):
        return [{"type": f"{kind}_type", "loc": loc, "msg": f"Input should be of JSON type {kind}", "input": value}]
    errors: list[dict] = []
    if isinstance(value, dict):
        props, extra = schema.get("properties", {}), schema.get("additionalProperties")
        for key, item in value.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                errors += _type_errors(item, sub, defs, (*loc, key))
    elif isinstance(value, list):
        prefix = schema.get("prefixItems", [])
        for i, item in enumerate(value):
            sub = prefix[i] if i < len(prefix) else schema.get("items")
            if isinstance(sub, dict):
                errors += _type_errors(item, sub, defs, (*loc, i))
    return errors


def strict(model: type[BaseModel]) -> Any:
    """A dependency that checks the raw JSON body's types against `model`'s JSON schema.

    FastAPI validates bodies in pydantic's lax mode, which turns `false` into 0.0 and `"0.5"` into 0.5: a client
    sending those has a bug, and the schema does not allow them, so they get 422 like any invalid body. (Pydantic's
    strict mode would also refuse 3.0 for an integer, which JSON Schema allows.)
    """
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})

    async def check(request: Request) -> None:
        try:
            value = json.loads(await request.body())
        except ValueError:
            return  # FastAPI answers malformed JSON itself
        errors = _type_errors(value, schema, defs, ("body",))
        if errors:
            raise RequestValidationError(errors)

    return Annotated[None, Depends(check)]
