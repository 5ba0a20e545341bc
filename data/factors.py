"""The factors of the synthetic data, their caption words, and the word-level vocabulary.

Reference design ("MAD", Morpho-MNIST digits): one object factor (the digit) and five attribute
factors; 10 x 3*2*2*2*7 = 1,680 combinations. Every factor value is one caption word and one token.

The layout world (``LAYOUT_FACTORS``, the dense-feature study) places the object in a larger scene and
adds three coarse layout words, as real captions describe a scene: where the object is (a cell of a
3 x 3 grid), how large it is (a size class) and how far (a depth plane). Each word names a bin; the
object's exact place, scale and distance vary within it (``infogap.data.render``), so dense targets
stay finer than the words.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

OBJECT = "object"

FACTORS: dict[str, tuple[str, ...]] = {
    OBJECT: tuple(str(d) for d in range(10)),
    "thickness": ("no thickthinning", "thickening", "thinning"),
    "swelling": ("no swelling", "swelling"),
    "fracture": ("no fracture", "fracture"),
    "scaling": ("large", "small"),
    "colour": ("gray", "red", "green", "blue", "cyan", "magenta", "yellow"),
}
FACTOR_NAMES: tuple[str, ...] = tuple(FACTORS)
ATTRIBUTE_FACTORS: tuple[str, ...] = tuple(f for f in FACTORS if f != OBJECT)
# The layout world's coarse scene words (not in FACTORS: they are not attributes of the object and k does
# not count them; a layout caption names all three or none).
LAYOUT_FACTORS: dict[str, tuple[str, ...]] = {
    "position": ("top left", "top", "top right", "left", "centre", "right", "bottom left", "bottom", "bottom right"),
    "size": ("little", "medium-sized", "big"),
    "plane": ("near", "far"),
}
LAYOUT_NAMES: tuple[str, ...] = tuple(LAYOUT_FACTORS)
# The 24 morphological variants of a test object: thickness x swelling x fracture x scaling.
MORPHOLOGICAL_FACTORS: tuple[str, ...] = ("thickness", "swelling", "fracture", "scaling")

COLOUR_RGB = np.array(
    [
        [1.0, 1.0, 1.0],  # gray: the grayscale stroke itself
        [1.0, 0.0, 0.0],
        [0.0, 1.0, 0.0],
        [0.0, 0.0, 1.0],
        [0.0, 1.0, 1.0],
        [1.0, 0.0, 1.0],
        [1.0, 1.0, 0.0],
    ],
    dtype=np.float32,
)


def check_factor(name: str, what: str = "factor") -> str:
    if name not in FACTORS:
        raise ValueError(f"unknown {what} {name!r}; factors are: {', '.join(FACTOR_NAMES)}")
    return name


def value_index(factor: str, value: str | int) -> int:
    """Index of ``value`` among the values of ``factor``; accepts the word or an integer index."""
    values = FACTORS[check_factor(factor)]
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if not 0 <= value < len(values):
            raise ValueError(f"value {value} out of range for factor {factor!r} (0..{len(values) - 1})")
        return int(value)
    if str(value) in values:
        return values.index(str(value))
    raise ValueError(f"unknown value {value!r} for factor {factor!r}; values are: {', '.join(values)}")


@dataclass(frozen=True)
class Vocabulary:
    """Word-level tokenizer: one token per factor value, plus PAD (0), SOT and EOT (the largest id).

    A caption of the always-present word plus k attributes is ``[SOT, w_0 .. w_k, EOT, PAD ...]``.
    ``layout``: the layout world's vocabulary, the layout words after the factor words (whose ids do not
    change) and three more places in the context.
    """

    layout: bool = False

    @property
    def factors(self) -> dict[str, tuple[str, ...]]:
        """Every factor with its words, in token order: the object's, then the layout's."""
        return {**FACTORS, **LAYOUT_FACTORS} if self.layout else FACTORS

    @property
    def context_length(self) -> int:
        return len(self.factors) + 2

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def offsets(self) -> dict[str, int]:
        out, start = {}, 1
        for f, values in self.factors.items():
            out[f] = start
            start += len(values)
        return out

    @property
    def sot_id(self) -> int:
        return 1 + sum(len(v) for v in self.factors.values())

    @property
    def eot_id(self) -> int:
        return self.sot_id + 1

    @property
    def size(self) -> int:
        return self.eot_id + 1

    def token(self, factor: str, value: int) -> int:
        return self.offsets[factor] + int(value)

    def words(self) -> list[str]:
        out = ["<pad>"]
        for values in self.factors.values():
            out.extend(values)
        return out + ["<sot>", "<eot>"]

    def decode(self, tokens) -> str:
        words = self.words()
        return ", ".join(words[t] for t in tokens if t not in (self.pad_id, self.sot_id, self.eot_id))

    def encode(self, text: str) -> np.ndarray:
        """A caption in the caption format (factor values joined by ', ', e.g. "3, red, small") as word
        tokens (context_length,); a one-line error names a word that is no factor value."""
        words = [w.strip() for w in text.split(",") if w.strip()]
        index = {w: i for i, w in enumerate(self.words())}
        unknown = [w for w in words if w not in index or w.startswith("<")]
        if unknown:
            raise ValueError(f"text {text!r}: {unknown[0]!r} is not a word of the synthetic captions (factor values joined by ', ')")
        if not 1 <= len(words) <= self.context_length - 2:
            raise ValueError(f"text {text!r}: a caption holds 1..{self.context_length - 2} words, got {len(words)}")
        tokens = np.zeros(self.context_length, dtype=np.int64)
        tokens[0], tokens[len(words) + 1] = self.sot_id, self.eot_id
        tokens[1: len(words) + 1] = [index[w] for w in words]
        return tokens

    def text_spec(self) -> dict:
        """What the word-level text tower needs to know (see ``models.build_model``)."""
        return {"vocab_size": self.size, "context_length": self.context_length, "eos_id": self.eot_id, "pad_id": self.pad_id}


@dataclass(frozen=True)
class Cooccurrence:
    """Make ``factor`` take one of ``values`` with probability ``p`` for the objects ``objects``.

    For training samples of those objects, P(factor in values | object) = p exactly, the value then
    uniform among ``values``; the other values share the rest uniformly. Other objects keep uniform
    factors. One object and one value is the plain P(factor = value | object) = p.
    """

    objects: tuple[str, ...]
    factor: str
    values: tuple[str, ...]
    p: float

    def __post_init__(self):
        check_factor(self.factor)
        if self.factor == OBJECT:
            raise ValueError("cooccurrence.factor must be an attribute factor, not 'object'")
        if not self.objects or not self.values:
            raise ValueError("cooccurrence needs at least one object and one value")
        for o in self.objects:
            value_index(OBJECT, o)
        for v in self.values:
            value_index(self.factor, v)
        if not (isinstance(self.p, (int, float)) and not isinstance(self.p, bool) and 0.0 <= float(self.p) <= 1.0):
            raise ValueError(f"cooccurrence.p must be in [0, 1], got {self.p!r}")


def _names(v) -> tuple[str, ...]:
    return tuple(str(x) for x in (v if isinstance(v, (list, tuple)) else [v]))


def parse_cooccurrence(c) -> Optional[tuple[Cooccurrence, ...]]:
    """``data.cooccurrence``: one ``{object, factor, value, p}`` or a list of them; ``object`` and
    ``value`` may be lists (``{object: [0, 1, 2], factor: colour, value: [red, yellow], p: 0.9}``). Two
    entries may not set the same factor of the same object."""
    if c is None:
        return None
    entries = c if isinstance(c, (list, tuple)) else [c]
    out = []
    for e in entries:
        if isinstance(e, Cooccurrence):
            out.append(e)
            continue
        if not isinstance(e, dict):
            raise ValueError(f"cooccurrence entries are mappings {{object, factor, value, p}}, got {e!r}")
        missing = {"object", "factor", "value", "p"} - set(e)
        if missing:
            raise ValueError(f"cooccurrence needs the fields object, factor, value, p; missing {', '.join(sorted(missing))}")
        extra = set(e) - {"object", "factor", "value", "p"}
        if extra:
            raise ValueError(f"unknown cooccurrence field(s): {', '.join(sorted(extra))}")
        out.append(Cooccurrence(objects=_names(e["object"]), factor=str(e["factor"]), values=_names(e["value"]), p=e["p"]))
    seen = set()
    for e in out:
        for o in e.objects:
            if (o, e.factor) in seen:
                raise ValueError(f"cooccurrence: two entries set {e.factor!r} of object {o}")
            seen.add((o, e.factor))
    return tuple(out) or None
