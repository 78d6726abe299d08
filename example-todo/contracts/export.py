"""Writes the JSON Schema of each model in `models.SCHEMAS` into the directory given as the
first argument, as `model_json_schema()` returns it (two-space indent, a final newline).

Usage: python export.py OUT_DIR [MODELS_DIR]   (MODELS_DIR defaults to this file's directory)
"""

import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
sys.path.insert(0, sys.argv[2] if len(sys.argv) > 2 else str(Path(__file__).parent))

import models  # noqa: E402

out.mkdir(parents=True, exist_ok=True)
for name, model in models.SCHEMAS.items():
    text = json.dumps(model.model_json_schema(), indent=2) + "\n"
    (out / name).write_text(text)
