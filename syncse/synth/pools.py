"""The prompt pools (`syncse/pools/*.yaml`): the paper's instructions, our exemplars, our targeted
negative instructions, the scratch genres with their topic-tagged example sentences, the topics,
and which prompts we wrote."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

SIDES = ("positive", "negative")
WRITTEN_BY = ("paper", "paper+us", "us")  # a caption prompt: quoted by the paper, its quote completed by us, ours


@dataclass(frozen=True)
class Exemplar:
    """One few-shot pair; `id` is `<instruction id>-<index>` (e.g. `pos2-07`)."""

    id: str
    input: str
    output: str


@dataclass(frozen=True)
class Instruction:
    """An annotation instruction (the paper's wording) with its own exemplar pool; `omits`: it
    allows dropping details (positive 4), so an output that only deletes words is what it asks for;
    `reorders`: it asks for the input's words in another order (a role swap), so such an output is no copy."""

    id: str
    text: str
    exemplars: tuple[Exemplar, ...]
    omits: bool = False
    reorders: bool = False


@dataclass(frozen=True)
class Example:
    """One of our example sentences of a scratch genre, tagged with the topic it is about."""

    text: str
    topic: str


@dataclass(frozen=True)
class Genre:
    """A scratch genre: the paper's description, whether it is caption-style, our examples."""

    id: str
    description: str
    caption: bool
    examples: tuple[Example, ...]

    def shot_pool(self, size: int) -> tuple[Example, ...]:
        """The examples a one-shot is drawn from: the first `size` (0: all)."""
        return self.examples[:size] if size else self.examples


@dataclass(frozen=True)
class PromptPools:
    """Everything the prompts are built from, loaded from `syncse/pools/*.yaml`."""

    positive: tuple[Instruction, ...]
    negative: tuple[Instruction, ...]
    scratch: dict[str, str]  # id -> template with {number}, {genre}, {topics}
    caption: dict[str, str]
    caption_written_by: dict[str, str]  # id -> one of WRITTEN_BY
    genres: tuple[Genre, ...]
    topics: tuple[str, ...]
    targeted: tuple[Instruction, ...] = ()  # our targeted negative instructions (targeted.yaml)

    def instructions(self, side: str) -> tuple[Instruction, ...]:
        """The instructions of `side` (`positive` or `negative`)."""
        if side not in SIDES:
            raise ValueError(f"unknown side {side!r}; expected one of {SIDES}")
        return self.positive if side == "positive" else self.negative

    def by_id(self) -> dict[str, Instruction]:
        """Every annotation instruction (the paper's and our targeted ones) by id."""
        return {i.id: i for i in self.positive + self.negative + self.targeted}


def load_pools() -> PromptPools:
    """Read and check the packaged prompt pools."""
    folder = resources.files("syncse") / "pools"
    annotation = yaml.safe_load((folder / "annotation.yaml").read_text(encoding="utf-8"))
    scratch = yaml.safe_load((folder / "scratch.yaml").read_text(encoding="utf-8"))
    inputs, omitting = annotation["inputs"], set(annotation["omit_details"])

    def instructions(kind: str) -> tuple[Instruction, ...]:
        return tuple(
            Instruction(iid, text, tuple(
                Exemplar(f"{iid}-{i:02d}", inputs[i], out) for i, out in enumerate(annotation["outputs"][iid])
            ), iid in omitting)
            for iid, text in annotation["instructions"][kind].items()
        )

    topics = tuple(scratch["topics"])
    genres = tuple(_genre(gid, g, topics) for gid, g in scratch["genres"].items())
    targeted = _targeted(yaml.safe_load((folder / "targeted.yaml").read_text(encoding="utf-8")))
    captions = scratch["caption_instructions"]
    for cid, caption in captions.items():
        if caption["written_by"] not in WRITTEN_BY:
            raise ValueError(f"scratch.yaml caption_instructions.{cid}.written_by: {caption['written_by']!r}; "
                             f"expected one of {WRITTEN_BY}")
    return PromptPools(
        instructions("positive"), instructions("negative"), dict(scratch["instructions"]),
        {cid: c["text"] for cid, c in captions.items()}, {cid: c["written_by"] for cid, c in captions.items()},
        genres, topics, targeted,
    )


def _targeted(raw: dict[str, Any]) -> tuple[Instruction, ...]:
    """Our targeted negative instructions (targeted.yaml), each with its own `[input, output]` exemplars."""
    if raw["written_by"] != "us":
        raise ValueError(f"targeted.yaml written_by: {raw['written_by']!r}; expected 'us' (the paper has none)")
    reorders = set(raw["reorders"])
    return tuple(
        Instruction(iid, item["text"], tuple(
            Exemplar(f"{iid}-{i:02d}", pair[0], pair[1]) for i, pair in enumerate(item["exemplars"])
        ), reorders=iid in reorders)
        for iid, item in raw["instructions"].items()
    )


def _genre(gid: str, raw: dict[str, Any], topics: tuple[str, ...]) -> Genre:
    """One genre of scratch.yaml; every example is `[topic, sentence]` with a listed topic."""
    examples = []
    for i, item in enumerate(raw["examples"]):
        if not (isinstance(item, list) and len(item) == 2 and item[0] in topics):
            raise ValueError(f"scratch.yaml genres.{gid}.examples[{i}]: {item!r} is not [topic, sentence] "
                             f"with a topic from the topics list")
        examples.append(Example(item[1], item[0]))
    return Genre(gid, raw["description"], bool(raw.get("caption", False)), tuple(examples))
