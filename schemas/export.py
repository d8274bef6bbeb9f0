"""Write the JSON Schema file of every input topic: ``python -m schemas.export [DIR]``.

The files are committed; ``tests/test_schemas.py`` fails when they drift from the models.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

from schemas.events import TOPICS, TopicSchema, adapter_for

SCHEMA_DIR = Path(__file__).parent


def schema_document(schema: TopicSchema) -> dict[str, Any]:
    document = adapter_for(schema).json_schema(ref_template="#/$defs/{model}")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"valuestream/{schema.topic}.schema.json",
        "title": schema.title,
        **document,
    }


def schema_path(schema: TopicSchema, directory: Path = SCHEMA_DIR) -> Path:
    return directory / f"{schema.topic}.schema.json"


def render(schema: TopicSchema) -> bytes:
    return orjson.dumps(schema_document(schema), option=orjson.OPT_INDENT_2) + b"\n"


def main(argv: list[str]) -> int:
    directory = Path(argv[0]) if argv else SCHEMA_DIR
    for schema in TOPICS:
        path = schema_path(schema, directory)
        path.write_bytes(render(schema))
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
