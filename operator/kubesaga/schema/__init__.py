"""Artefacts generated from the models: the Saga CRD and the protocol's JSON Schemas."""

from kubesaga.schema._openapi import SchemaConversionError, structural
from kubesaga.schema.crd import CHART_CRD_PATH, CRD_NAME, CRD_PATH, CRD_PATHS, render_crd, saga_crd
from kubesaga.schema.messages import SCHEMA_DIR, message_schema, message_schema_files

__all__ = [
    "CHART_CRD_PATH",
    "CRD_NAME",
    "CRD_PATH",
    "CRD_PATHS",
    "SCHEMA_DIR",
    "SchemaConversionError",
    "message_schema",
    "message_schema_files",
    "render_crd",
    "saga_crd",
    "structural",
]
