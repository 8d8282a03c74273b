"""Artefacts generated from the models: the Saga CRD and the protocol's JSON Schemas."""

from kubesaga.schema._openapi import SchemaConversionError, structural
from kubesaga.schema.crd import CRD_NAME, CRD_PATH, render_crd, saga_crd
from kubesaga.schema.messages import SCHEMA_DIR, message_schema, message_schema_files

__all__ = [
    "CRD_NAME",
    "CRD_PATH",
    "SCHEMA_DIR",
    "SchemaConversionError",
    "message_schema",
    "message_schema_files",
    "render_crd",
    "saga_crd",
    "structural",
]
