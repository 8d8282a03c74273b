"""Turn pydantic's JSON Schema into a Kubernetes structural OpenAPI v3 schema.

The apiserver accepts only a subset of JSON Schema in a CRD, and only "structural" schemas: every
node has a ``type``, there are no ``$ref``/``anyOf`` unions, ``additionalProperties`` is never
``false`` (pruning drops unknown fields anyway), and free-form objects say so with
``x-kubernetes-preserve-unknown-fields``. Anything this module does not know how to translate is an
error, so a model change that the CRD cannot express fails loudly instead of being dropped.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, NoDefault
from pydantic_core import core_schema

Schema = dict[str, Any]

ALLOWED_KEYS = frozenset(
    {
        "type",
        "format",
        "description",
        "properties",
        "required",
        "items",
        "additionalProperties",
        "enum",
        "default",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "pattern",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "nullable",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-validations",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-map-type",
        "x-kubernetes-int-or-string",
        "x-kubernetes-embedded-resource",
    }
)
"""The keys a CRD's openAPIV3Schema may use (JSONSchemaProps)."""

DROPPED_KEYS = frozenset({"title", "$defs"})


class SchemaConversionError(ValueError):
    """The model uses a JSON Schema construct a structural CRD schema cannot express."""


class KubernetesJsonSchema(GenerateJsonSchema):
    """pydantic's generator, but a ``default_factory`` becomes a ``default`` too.

    A CRD should default ``retry`` to ``{}`` (the server then fills the nested defaults),
    ``input`` and ``context`` to ``{}`` and lists to ``[]``; pydantic leaves factories out.
    A model instance is written with only its non-default fields, i.e. ``{}`` for a plain one.
    """

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        if "default" in schema:
            return schema["default"]
        factory = schema.get("default_factory")
        if factory is None or schema.get("default_factory_takes_data"):
            return NoDefault
        value = factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return value.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        return value


def model_schema(model: type[BaseModel], *, mode: str) -> Schema:
    """The model's JSON Schema (camelCase names) with factory defaults, before conversion."""
    return model.model_json_schema(
        by_alias=True,
        mode="serialization" if mode == "serialization" else "validation",
        schema_generator=KubernetesJsonSchema,
    )


def structural(schema: Schema) -> Schema:
    """Convert a pydantic JSON Schema document (with its ``$defs``) into a structural schema."""
    defs: dict[str, Schema] = schema.get("$defs", {})
    return _convert(schema, defs, "")


def _resolve(node: Schema, defs: dict[str, Schema], path: str) -> Schema:
    """Inline ``$ref`` and collapse ``anyOf [X, null]`` into X; the outer keys win."""
    node = dict(node)
    while True:
        if "$ref" in node:
            ref: str = node.pop("$ref")
            name = ref.rsplit("/", 1)[-1]
            if not ref.startswith("#/$defs/") or name not in defs:
                raise SchemaConversionError(f"{path or '/'}: unresolvable $ref {ref!r}")
            node = {**defs[name], **node}
        elif "anyOf" in node:
            variants = [v for v in node.pop("anyOf") if v != {"type": "null"}]
            if len(variants) != 1:
                raise SchemaConversionError(
                    f"{path or '/'}: unions other than 'X | None' cannot be structural: {variants}"
                )
            node = {**variants[0], **node}
        else:
            return node


def _convert(node: Schema, defs: dict[str, Schema], path: str) -> Schema:
    node = _resolve(node, defs, path)
    out: Schema = {}
    for key, value in node.items():
        if key in DROPPED_KEYS:
            continue
        if key == "default" and value is None:
            continue
        if key == "const":
            out["enum"] = [value]
        elif key == "properties":
            out["properties"] = {
                name: _convert(sub, defs, f"{path}.{name}") for name, sub in value.items()
            }
        elif key == "items":
            out["items"] = _convert(value, defs, f"{path}[]")
        elif key == "additionalProperties":
            if value is True:
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif isinstance(value, dict):
                out["additionalProperties"] = _convert(value, defs, f"{path}.*")
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            # JSON Schema 2020-12 gives the bound; OpenAPI v3.0 wants the bound plus a flag.
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        else:
            out[key] = copy.deepcopy(value)
    if "enum" in out and "type" not in out:
        out["type"] = _enum_type(out["enum"], path)
    if out.get("type") == "object" and "properties" in out:
        out.pop("x-kubernetes-preserve-unknown-fields", None)
    unknown = set(out) - ALLOWED_KEYS
    if unknown:
        raise SchemaConversionError(f"{path or '/'}: keys not allowed in a CRD: {sorted(unknown)}")
    if "type" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        raise SchemaConversionError(f"{path or '/'}: no type (every CRD schema node needs one)")
    return out


def _enum_type(values: list[Any], path: str) -> str:
    kinds = {type(v) for v in values}
    if kinds == {str}:
        return "string"
    if kinds == {bool}:
        return "boolean"
    if kinds <= {int}:
        return "integer"
    raise SchemaConversionError(f"{path or '/'}: enum of mixed or unsupported types {values}")
