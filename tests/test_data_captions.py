"""Caption transforms of the real-data path, checked word-exactly."""
from __future__ import annotations

import random

import pytest

from infogap.data.captions import (
    CaptionTransform,
    drop_sentences,
    first_sentences,
    keep_fraction,
    split_sentences,
)

CAPTION = "a b c d e f g h"
LONG = "A red car. It is parked on a street! Is the sky blue? Trees line the road."


def test_half_keeps_the_first_or_the_second_half_exactly():
    seen = {keep_fraction(CAPTION, 0.5, random.Random(s)) for s in range(50)}
    assert seen == {"a b c d", "e f g h"}


def test_quarter_keeps_one_of_four_contiguous_quarters():
    seen = {keep_fraction(CAPTION, 0.25, random.Random(s)) for s in range(100)}
    assert seen == {"a b", "c d", "e f", "g h"}
    uneven = {keep_fraction("w1 w2 w3 w4 w5 w6 w7", 0.25, random.Random(s)) for s in range(200)}
    assert " ".join(sorted(uneven, key=lambda t: int(t.split()[0][1:]))).split() == [f"w{i}" for i in range(1, 8)]


def test_short_captions_keep_a_whole_word():
    assert keep_fraction("dog", 0.25, random.Random(0)) == "dog"
    assert keep_fraction("big dog", 0.25, random.Random(0)) in {"big", "dog"}
    assert keep_fraction("", 0.5, random.Random(0)) == ""


def test_sentences():
    assert split_sentences(LONG) == ["A red car.", "It is parked on a street!", "Is the sky blue?", "Trees line the road."]
    assert first_sentences(LONG, 2) == "A red car. It is parked on a street!"
    assert drop_sentences(LONG, 0.0, random.Random(0)) == LONG
    assert drop_sentences(LONG, 1.0, random.Random(0)) in split_sentences(LONG)
    kept = drop_sentences(LONG, 0.5, random.Random(3))
    assert all(s in split_sentences(LONG) for s in split_sentences(kept))


def test_transform_probability_and_enriched_captions():
    always = CaptionTransform("choose_enriched", p=1.0)
    assert always("short", random.Random(0), enriched="long caption") == "long caption"
    assert CaptionTransform("concat_enriched")("short.", random.Random(0), enriched="Extra.") == "short. Extra."
    never = CaptionTransform("keep_fraction", p=0.0, fraction=0.5)
    assert never(CAPTION, random.Random(0)) == CAPTION
    half = CaptionTransform("choose_enriched", p=0.5)
    picks = [half("s", random.Random(i), enriched="e") for i in range(2000)]
    assert picks.count("e") / len(picks) == pytest.approx(0.5, abs=0.04)
    with pytest.raises(ValueError, match="needs an enriched caption"):
        always("short", random.Random(0))


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="shuffle"), "'shuffle'"), (dict(p=1.5), "1.5"), (dict(fraction=0.0), "fraction"), (dict(n=0), "n must be"),
])
def test_bad_transform_is_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CaptionTransform(**kwargs)
