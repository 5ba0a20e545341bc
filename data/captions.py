"""Caption transforms for real image-text data: the experimental knob of the real-data protocols.

Each transform takes the caption (and, where it needs one, the enriched caption) and a
``random.Random``; ``CaptionTransform`` applies one with probability ``p`` at training time only.
Reference protocols: *half* keeps the first or second half of the words, *quarter* one of the four
contiguous quarters; DCI fine-tuning trains on the short caption or on short + extra captions.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Optional

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text.strip()) if s]


def keep_fraction(text: str, fraction: float, rng: random.Random) -> str:
    """Split the words into round(1 / fraction) contiguous parts of (nearly) equal size and keep one at
    random: fraction 0.5 keeps the first or the second half, 0.25 one of four quarters."""
    words = text.split()
    parts = max(1, round(1.0 / fraction))
    if len(words) < parts:  # fewer words than parts: one word
        return words[rng.randrange(len(words))] if words else text
    bounds = [round(i * len(words) / parts) for i in range(parts + 1)]
    i = rng.randrange(parts)
    return " ".join(words[bounds[i]: bounds[i + 1]])


def first_sentences(text: str, n: int) -> str:
    """The first ``n`` sentences."""
    return " ".join(split_sentences(text)[:n])


def drop_sentences(text: str, p_drop: float, rng: random.Random) -> str:
    """Drop each sentence with probability ``p_drop``; at least one sentence survives."""
    sentences = split_sentences(text)
    if not sentences:
        return text
    kept = [s for s in sentences if rng.random() >= p_drop]
    return " ".join(kept or [sentences[rng.randrange(len(sentences))]])


KINDS = ("none", "keep_fraction", "first_sentences", "drop_sentences", "choose_enriched", "concat_enriched")


@dataclass(frozen=True)
class CaptionTransform:
    """One caption transform, applied with probability ``p`` (training only).

    kind: ``keep_fraction`` (``fraction``), ``first_sentences`` (``n``), ``drop_sentences``
    (``p_drop``), ``choose_enriched`` (the enriched caption instead of the original), or
    ``concat_enriched`` (original + " " + enriched: DCI's short + extra captions).
    """

    kind: str = "none"
    p: float = 1.0
    fraction: float = 0.25
    n: int = 1
    p_drop: float = 0.5

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown caption transform {self.kind!r}; kinds: {', '.join(KINDS)}")
        for name in ("p", "p_drop"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"caption transform {name} must be in [0, 1], got {value}")
        if not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"caption transform fraction must be in (0, 1], got {self.fraction}")
        if self.n < 1:
            raise ValueError(f"caption transform n must be >= 1, got {self.n}")

    @property
    def needs_enriched(self) -> bool:
        return self.kind in ("choose_enriched", "concat_enriched")

    def __call__(self, caption: str, rng: random.Random, enriched: Optional[str] = None) -> str:
        if self.kind == "none" or rng.random() >= self.p:
            return caption
        if self.kind == "keep_fraction":
            return keep_fraction(caption, self.fraction, rng)
        if self.kind == "first_sentences":
            return first_sentences(caption, self.n)
        if self.kind == "drop_sentences":
            return drop_sentences(caption, self.p_drop, rng)
        if enriched is None:
            raise ValueError(f"caption transform {self.kind!r} needs an enriched caption and the sample has none")
        return enriched if self.kind == "choose_enriched" else f"{caption} {enriched}"
