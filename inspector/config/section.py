"""The base of every config section: unknown fields are errors, so a misspelt key never passes silently."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Section"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")
