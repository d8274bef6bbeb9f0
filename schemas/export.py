"""Write the JSON Schema file of every topic: ``python -m schemas.export [DIR]``.

Inputs (``schemas/events.py``, pydantic) and outputs (``schemas/outputs.py``, msgspec) each
get ``<topic>.schema.json``. The files are committed; ``tests/test_schemas.py`` fails when
they drift from the models.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import msgspec
import orjson

from schemas.events import TOPICS, adapter_for
from schemas.outputs import OUTPUTS

SCHEMA_DIR = Path(__file__).parent
DRAFT = "https://json-schema.org/draft/2020-12/schema"


def documents() -> dict[str, dict[str, Any]]:
    """topic (without prefix) -> its JSON Schema document."""
    found: dict[str, dict[str, Any]] = {}
    for schema in TOPICS:
        document = adapter_for(schema).json_schema(ref_template="#/$defs/{model}")
        found[schema.topic] = {"$schema": DRAFT, "$id": f"valuestream/{schema.topic}.schema.json",
                               "title": schema.title, **document}
    for topic, model in OUTPUTS.items():
        document = msgspec.json.schema(model, ref_template="#/$defs/{name}")
        found[topic] = {"$schema": DRAFT, "$id": f"valuestream/{topic}.schema.json",
                        "title": f"valuestream {topic} record", **document}
    return found


def schema_path(topic: str, directory: Path = SCHEMA_DIR) -> Path:
    return directory / f"{topic}.schema.json"


def render(document: dict[str, Any]) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"


def main(argv: list[str]) -> int:
    directory = Path(argv[0]) if argv else SCHEMA_DIR
    for topic, document in documents().items():
        path = schema_path(topic, directory)
        path.write_bytes(render(document))
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
