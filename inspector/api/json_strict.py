"""JSON strictness for request bodies: a dependency that refuses values whose JSON type the body's schema does not
allow (`false` or `"0.5"` for a number), which FastAPI's lax pydantic validation would coerce; and a middleware that
refuses non-finite numbers (`NaN`, `Infinity`, `1e999`) in any JSON body before routing, with a 422 that does not
echo them."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["NonFiniteJsonGuard", "has_non_finite", "strict"]

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


# ------------------------------------------------------------------------------------------------ non-finite numbers
_NON_FINITE = [{"type": "json_invalid", "loc": ["body"], "msg": "non-finite numbers are not valid JSON"}]
_BODYLESS = frozenset({"GET", "HEAD", "OPTIONS"})


class _NonFinite(ValueError):
    pass


def _refuse_constant(_name: str) -> Any:
    raise _NonFinite


def _finite_float(text: str) -> float:
    value = float(text)  # `1e999` and long digit strings overflow to inf
    if not math.isfinite(value):
        raise _NonFinite
    return value


def has_non_finite(body: bytes) -> bool:
    """True when `body` is JSON with `NaN`, `Infinity` or a number too large for a float in it. Python's parser
    takes those (JSON does not), and they then reach validation, the store and error answers that cannot be
    encoded. Not JSON at all: False (FastAPI answers that itself)."""
    try:
        json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
    except _NonFinite:
        return True
    except ValueError:  # also UnicodeDecodeError
        return False
    return False


def _json_body(scope: Scope) -> bool:
    """Whether FastAPI would parse this request's body as JSON: no content type, or `application/json` / `+json`."""
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            kind = value.split(b";", 1)[0].strip().lower()
            return kind == b"application/json" or (kind.startswith(b"application/") and kind.endswith(b"+json"))
    return True


class NonFiniteJsonGuard:
    """ASGI middleware: a JSON body with a non-finite number is a 422 before any route (or login check) runs.

    The answer does not echo the body. Other bodies are read once and handed on unchanged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _BODYLESS or not _json_body(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away before its body was in: nobody to answer
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and has_non_finite(body):
            await JSONResponse({"detail": _NON_FINITE}, status_code=422)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)
