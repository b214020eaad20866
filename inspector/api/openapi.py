"""The served OpenAPI document, completed with what FastAPI cannot infer: optional sessions and the class names a
thresholds edit may use."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

__all__ = ["finish_schema"]


def finish_schema(
    app: FastAPI,
    names: Callable[[], dict[int, str]],
    *,
    required: set[tuple[str, str]],
    all_required: bool,
) -> None:
    """Say in the schema what FastAPI cannot infer, so that it matches what the app does:

    - the session is optional (`{}` among the security requirements, per OpenAPI) where it is: FastAPI lists the
      bearer / cookie schemes on every route that looks at the session, even with `auto_error=False`;
    - the class names a client may put under `classes` are those of the model in use (`names()`); the cached
      schema is rebuilt when they change (a recipe switch to a model with other classes).
    """
    build = app.openapi
    built_for: list[list[str]] = []  # the class names the cached schema lists

    def openapi() -> dict[str, Any]:
        class_names = list(names().values())
        if app.openapi_schema is None or built_for != [class_names]:
            app.openapi_schema = None  # FastAPI's own openapi() returns its cached schema otherwise
            spec = build()
            for path, ops in spec.get("paths", {}).items():
                for method, op in ops.items():
                    security = op.get("security")
                    if security and not all_required and (method, path) not in required and {} not in security:
                        security.append({})
            incoming = spec.get("components", {}).get("schemas", {}).get("ThresholdsIn", {})
            classes = incoming.get("properties", {}).get("classes")
            if classes is not None:
                classes.update({"propertyNames": {"enum": class_names}} if class_names else {"maxProperties": 0})
            app.openapi_schema = spec
            built_for[:] = [class_names]
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
