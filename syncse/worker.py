"""One synthesis worker: `python -m syncse.worker partial` fills the shared response cache.

Several workers (processes, or machines sharing `llm.cache_dir`, e.g. over NFS) run the same
stage's real pipeline, `syncse.synth.synthesize`, at once. Each request is claimed by its content
hash before it is sent (`syncse.llm.RequestClaims`), so no request is sent twice; a worker reads
the requests the others hold from the cache once they are stored, and takes over those of a
worker that died. Every worker therefore walks the same pipeline to the same end (scratch's
generation, then its annotation), and the budget is the one ledger beside the cache. When they
are done, the DVC stage (`dvc repro synthesize@partial`) assembles triplets, drop report and
metrics from the cache without sending anything.

Example:
    python -m syncse.worker partial & python -m syncse.worker partial & wait
    dvc repro synthesize@partial
    python -m syncse.worker partial --profile scale   # the scale study's bank (studies/scale/dvc.yaml)

A worker always generates what is missing, even where the params say `llm.replay_only` (the scale
profile's stages do: they only read the bank the workers fill).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging

from syncse.config import load_params
from syncse.llm import open_client
from syncse.progress import LOG_FORMAT
from syncse.synth import PIPELINES, synthesize

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    """Run pipeline `name` once against the shared cache; its outputs are left to the DVC stage."""
    parser = argparse.ArgumentParser(prog="python -m syncse.worker", description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=PIPELINES, help="the synthesis stage to work on")
    parser.add_argument("--params", default="params.yaml", help="params file (its profile is applied)")
    parser.add_argument("--profile", default=None,
                        help="a profile of the params file instead of its own `profile` (a study's bank: scale)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    for noisy in ("httpx", "httpx2"):  # one line per HTTP request otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    params = load_params(args.params, args.profile)
    llm = dataclasses.replace(params.llm, replay_only=False)  # a worker fills the cache that replaying stages read
    with open_client(llm) as client:
        result = synthesize(args.name, client, params.synth, llm, params.seed, params.data.root)
        stats = client.stats
    logger.info("worker %s done: %d requests, %d answered from the cache (this or other workers' responses), "
                "%d rows kept", args.name, stats.requests, stats.cache_hits, len(result.triplets))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
