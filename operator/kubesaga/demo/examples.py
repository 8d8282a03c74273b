"""Finding the repository checkout and the examples the demo runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kubesaga.models import API_GROUP, API_VERSION, KIND, SagaPhase, SagaSpec

EXPECTED_PHASE_ANNOTATION = "examples.kubesaga.io/expected-phase"
"""Set in each example's saga.yaml: the final phase the demo and the tests expect."""


class DemoError(Exception):
    """A problem the user can fix; shown as one message, without a traceback."""


@dataclass(frozen=True)
class Example:
    """One folder of examples/: its saga manifest and its handler worker."""

    folder: Path
    name: str
    """metadata.name in saga.yaml; the demo appends a run id."""
    spec: SagaSpec
    expected: SagaPhase

    @property
    def key(self) -> str:
        """The folder name, e.g. ``01-order-saga``."""
        return self.folder.name


def find_repo(start: Path | None = None) -> Path:
    """The kubesaga checkout: the one this package is installed from (editable), else the one
    holding ``start`` (default: the working directory)."""
    candidates = [Path(__file__).resolve().parents[3]]
    here = (start or Path.cwd()).resolve()
    candidates += [here, *here.parents]
    for path in candidates:
        if (path / "hack" / "testenv.sh").is_file() and (path / "examples").is_dir():
            return path
    raise DemoError(
        "kubesaga demo runs from a checkout of the kubesaga repository (it needs hack/testenv.sh "
        "and examples/): clone it, cd into it and run hack/demo.sh"
    )


def load_examples(examples_dir: Path) -> list[Example]:
    """Every ``NN-name/`` folder with a saga.yaml and a handlers.py, in order."""
    examples = []
    for folder in sorted(p for p in examples_dir.iterdir() if p.is_dir()):
        manifest = folder / "saga.yaml"
        if not manifest.is_file() or not (folder / "handlers.py").is_file():
            continue
        examples.append(_load(folder, manifest))
    if not examples:
        raise DemoError(f"no examples (NN-name/saga.yaml + handlers.py) in {examples_dir}")
    return examples


def _load(folder: Path, manifest: Path) -> Example:
    try:
        doc: Any = yaml.safe_load(manifest.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise DemoError(f"{manifest} is not valid YAML: {error}") from error
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise DemoError(f"{manifest} is not a {KIND} manifest")
    if doc.get("apiVersion") != f"{API_GROUP}/{API_VERSION}":
        raise DemoError(f"{manifest}: apiVersion must be {API_GROUP}/{API_VERSION}")
    meta = doc.get("metadata") or {}
    try:
        spec = SagaSpec.model_validate(doc.get("spec") or {})
    except ValidationError as error:
        raise DemoError(f"{manifest} has an invalid spec:\n{error}") from error
    annotation = (meta.get("annotations") or {}).get(EXPECTED_PHASE_ANNOTATION, "Completed")
    expected = SagaPhase._value2member_map_.get(annotation)
    if not isinstance(expected, SagaPhase) or not expected.is_final:
        raise DemoError(
            f"{manifest}: {EXPECTED_PHASE_ANNOTATION} must be a final phase, not {annotation!r}"
        )
    return Example(
        folder=folder, name=str(meta.get("name") or folder.name), spec=spec, expected=expected
    )


def select_examples(examples: list[Example], only: tuple[str, ...]) -> list[Example]:
    """The examples named by folder (``02-compensation``) or number prefix (``02``); all if none."""
    if not only:
        return examples
    chosen = [e for e in examples if any(e.key == o or e.key.startswith(f"{o}-") for o in only)]
    if not chosen:
        known = ", ".join(e.key for e in examples)
        raise DemoError(f"no example matches {', '.join(only)}; the examples are: {known}")
    return chosen
