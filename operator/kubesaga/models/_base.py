"""Shared model configuration.

Every resource and message field is camelCase on the wire (Kubernetes and JSON convention) and
snake_case in Python; ``populate_by_name`` lets code and tests use either.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

JsonObject = dict[str, Any]
"""A free-form JSON object (step input, output, saga context)."""


class WireModel(BaseModel):
    """Base for everything that is serialised into the Saga object or a message."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=True,
        use_attribute_docstrings=True,
    )

    def to_wire(self) -> JsonObject:
        """The JSON-ready dict with camelCase keys and unset optionals left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
