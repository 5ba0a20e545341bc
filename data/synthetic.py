"""Synthetic images with controlled caption information: the "MAD" dataset, rebuilt.

A training sample is a pure function of (seed, epoch, index): its factors, its glyph, its caption
(the always-present word plus exactly ``k`` other factors, chosen without replacement and shuffled).
Training samples differ per epoch; the validation set and the test set (``test_base`` base objects x
all 24 morphological variants, colours fixed by the seed) never change. In the layout world
(``layout``) every sample is also placed in a scene by its layout words (``draw_layout``), which its
captions name, all three, when ``layout_words`` is on. Batches are rendered whole
(vectorised); each DDP rank takes a disjoint slice of every global batch, and each loader worker
whole batches in turn, so the stream is identical for any number of workers and ranks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Union

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from infogap.data.factors import (
    ATTRIBUTE_FACTORS,
    FACTOR_NAMES,
    FACTORS,
    LAYOUT_FACTORS,
    LAYOUT_NAMES,
    MORPHOLOGICAL_FACTORS,
    OBJECT,
    Cooccurrence,
    Vocabulary,
    check_factor,
    parse_cooccurrence,
    value_index,
)
from infogap.data.render import GLYPH_SETS, SCENE_SIZE, SIZE, STREAM, GlyphSource, hash_uniform, render_images, render_plan, sample_keys

# Reserved "epochs" for the fixed splits (training epochs count up from 0).
VAL_EPOCH = 2**62
TEST_EPOCH = 2**62 + 1
PROMPT_EPOCH = 2**62 + 2
CONCEPT_EPOCH = 2**62 + 3
N_MORPH = int(np.prod([len(FACTORS[f]) for f in MORPHOLOGICAL_FACTORS]))  # 24


@dataclass(frozen=True)
class CaptionSpec:
    """Which factors a caption names: the always-present one plus ``k`` of the others."""

    k: int = len(ATTRIBUTE_FACTORS)
    always_present: str = OBJECT

    def __post_init__(self):
        check_factor(self.always_present, "always-present factor")
        n = len(self.others)
        if not (isinstance(self.k, int) and 0 <= self.k <= n):
            raise ValueError(f"k={self.k!r} is out of range: captions can name 0..{n} attribute factors besides {self.always_present!r}")

    @property
    def others(self) -> tuple[str, ...]:
        return tuple(f for f in FACTOR_NAMES if f != self.always_present)


def run_seed(seed: Optional[int]) -> int:
    """A data module's seed: the given one, or (None) the run's seed, which ``seed_everything`` puts in
    ``PL_GLOBAL_SEED`` before the data module is built (so a sweep over ``seed_everything`` varies the
    data too); 0 outside a seeded run."""
    import os

    return int(seed if seed is not None else os.environ.get("PL_GLOBAL_SEED", 0))


def draw_factors(keys: np.ndarray, cooccurrence: Optional[tuple[Cooccurrence, ...]] = None) -> dict[str, np.ndarray]:
    """Uniform factor labels per sample; with ``cooccurrence`` entries, P(factor in values | object) = p
    for each entry's objects (two uniforms per sample and entry, from slots of their own)."""
    u = hash_uniform(keys, STREAM["factors"], len(FACTOR_NAMES))
    labels = {f: np.minimum((u[:, i] * len(FACTORS[f])).astype(np.int64), len(FACTORS[f]) - 1) for i, f in enumerate(FACTOR_NAMES)}
    for j, c in enumerate(cooccurrence or ()):
        targets = np.array([value_index(c.factor, v) for v in c.values], dtype=np.int64)
        others = np.array([i for i in range(len(FACTORS[c.factor])) if i not in targets], dtype=np.int64)
        rows = np.isin(labels[OBJECT], [value_index(OBJECT, o) for o in c.objects])
        v = hash_uniform(keys[rows], STREAM["cooccurrence"], 2 * j + 2)[:, 2 * j:]
        target = targets[np.minimum((v[:, 1] * len(targets)).astype(np.int64), len(targets) - 1)]
        other = others[np.minimum((v[:, 1] * len(others)).astype(np.int64), len(others) - 1)] if len(others) else target
        labels[c.factor][rows] = np.where(v[:, 0] < c.p, target, other)
    return labels


def draw_layout(keys: np.ndarray) -> dict[str, np.ndarray]:
    """Uniform layout-word labels per sample (the layout world's position cell, size class and depth plane),
    from a stream of their own: the object's factors are the same with and without a layout."""
    u = hash_uniform(keys, STREAM["layout_factors"], len(LAYOUT_NAMES))
    return {f: np.minimum((u[:, i] * len(LAYOUT_FACTORS[f])).astype(np.int64), len(LAYOUT_FACTORS[f]) - 1) for i, f in enumerate(LAYOUT_NAMES)}


def caption_factors(keys: np.ndarray, spec: CaptionSpec) -> np.ndarray:
    """(B, k + 1) indices into FACTOR_NAMES, in caption order: the always-present factor plus k others
    sampled without replacement, all shuffled."""
    others = np.array([FACTOR_NAMES.index(f) for f in spec.others])
    pick = np.argsort(hash_uniform(keys, STREAM["caption_pick"], len(others)), axis=1)[:, : spec.k]
    chosen = np.concatenate([np.full((len(keys), 1), FACTOR_NAMES.index(spec.always_present)), others[pick]], 1)
    order = np.argsort(hash_uniform(keys, STREAM["caption_order"], spec.k + 1), axis=1)
    return np.take_along_axis(chosen, order, 1)


def caption_with_k_attributes(keys: np.ndarray, labels: dict[str, np.ndarray], spec: CaptionSpec, vocab: Vocabulary,
                              layout: Optional[dict[str, np.ndarray]] = None) -> np.ndarray:
    """Word-level tokens (B, context_length): [SOT, words..., EOT, PAD...], one token per factor value;
    with ``layout`` (layout-word labels; a layout ``vocab``) the three layout words join the k + 1
    words, all shuffled together (an order stream of its own)."""
    factors = caption_factors(keys, spec)
    n = len(keys)
    tokens = np.zeros((n, vocab.context_length), dtype=np.int64)
    tokens[:, 0] = vocab.sot_id
    label_matrix = np.stack([labels[f] for f in FACTOR_NAMES], 1)
    offsets = np.array([vocab.offsets[f] for f in FACTOR_NAMES])
    rows = np.arange(n)[:, None]
    words = offsets[factors] + label_matrix[rows, factors]
    if layout is not None:
        if not vocab.layout:
            raise ValueError("layout words need the layout vocabulary (Vocabulary(layout=True))")
        words = np.concatenate([words, np.stack([vocab.offsets[f] + layout[f] for f in LAYOUT_NAMES], 1)], 1)
        words = np.take_along_axis(words, np.argsort(hash_uniform(keys, STREAM["layout_order"], words.shape[1]), axis=1), 1)
    tokens[:, 1: words.shape[1] + 1] = words
    tokens[:, words.shape[1] + 1] = vocab.eot_id
    return tokens


def caption_strings(tokens: np.ndarray, vocab: Vocabulary) -> list[str]:
    """The same captions as plain strings (for BPE tokenisers), words joined by ', '."""
    return [vocab.decode(t) for t in tokens]


# ---------------------------------------------------------------------------------------------
@dataclass
class SyntheticSource:
    """Everything a batch depends on besides its indices."""

    seed: int = 0
    caption: CaptionSpec = field(default_factory=CaptionSpec)
    cooccurrence: Optional[tuple[Cooccurrence, ...]] = None
    dense: bool = False
    mnist_dir: Optional[str] = None
    tokenizer: Optional[Callable[[list[str]], torch.Tensor]] = None  # None: the word-level vocabulary
    vocab: Vocabulary = field(default_factory=Vocabulary)
    force: Optional[dict[str, int]] = None  # labels of training and validation batches fixed to these values (benchmarks, previews, task image sets)
    glyph_set: str = "train"  # the font faces of the glyphs: "train", or "held_out" (a distribution no training run sees)
    layout: bool = False  # the layout world: objects placed in SCENE_SIZE-px scenes by their layout words
    layout_words: bool = True  # (layout world) captions name the three layout words; off: the same scenes, captions without them

    def __post_init__(self):
        self._glyphs: dict[bool, GlyphSource] = {}
        if self.layout and not self.vocab.layout:
            self.vocab = Vocabulary(layout=True)
        known = set(FACTOR_NAMES) | (set(LAYOUT_NAMES) if self.layout else set())
        unknown = sorted(set(self.force or {}) - known)
        if unknown:
            raise ValueError(f"force: {unknown[0]!r} is not a factor{'' if self.layout else ' (layout words need layout=True)'}; "
                             f"factors: {', '.join(sorted(known))}")

    @property
    def image_size(self) -> int:
        """Pixels per side of the rendered images."""
        return SCENE_SIZE if self.layout else SIZE

    def __getstate__(self):  # glyph sources are rebuilt lazily in each worker
        state = dict(self.__dict__)
        state["_glyphs"] = {}
        return state

    def glyphs(self, train: bool) -> GlyphSource:
        if train not in self._glyphs:
            self._glyphs[train] = GlyphSource(self.mnist_dir, train, self.glyph_set)
        return self._glyphs[train]

    def texts(self, keys: np.ndarray, labels: dict[str, np.ndarray], spec: CaptionSpec, layout: Optional[dict[str, np.ndarray]] = None) -> torch.Tensor:
        """Captions of ``spec``; in the layout world with ``layout_words`` they also name ``layout``."""
        named = layout if self.layout and self.layout_words else None
        tokens = caption_with_k_attributes(keys, labels, spec, self.vocab, named)
        if self.tokenizer is None:
            return torch.from_numpy(tokens)
        return self.tokenizer(caption_strings(tokens, self.vocab))

    def train_batch(self, epoch: int, index: np.ndarray, defer: bool = False) -> dict:
        """Training samples ``index`` of ``epoch``; ``defer``: leave the images to ``finish_render`` (on
        the training device), with the same result."""
        keys = sample_keys(self.seed, epoch, index)
        return self._assemble(keys, keys, self._forced(draw_factors(keys, self.cooccurrence)), train=True, full_captions=False, defer=defer,
                              layout=self._layout(keys))

    def val_batch(self, index: np.ndarray, defer: bool = False) -> dict:
        keys = sample_keys(self.seed, VAL_EPOCH, index)
        return self._assemble(keys, keys, self._forced(draw_factors(keys)), train=True, full_captions=True, defer=defer, layout=self._layout(keys))

    def _forced(self, labels: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``labels`` with every factor of ``force`` it has fixed to its value (training and validation batches)."""
        n = len(next(iter(labels.values())))
        return {**labels, **{f: np.full(n, v, dtype=np.int64) for f, v in (self.force or {}).items() if f in labels}}

    def _layout(self, keys: np.ndarray, forced: bool = True) -> Optional[dict[str, np.ndarray]]:
        """The layout-word labels of ``keys`` in the layout world (``force`` applied), else None."""
        if not self.layout:
            return None
        layout = draw_layout(keys)
        return self._forced(layout) if forced else layout

    def test_batch(self, index: np.ndarray, defer: bool = False) -> dict:
        """Test sample i: base object i // 24 (digit, glyph, jitter fixed by the seed) in morphological
        variant i % 24; its colour is fixed by the seed per sample."""
        index = np.asarray(index, dtype=np.int64)
        base, variant = index // N_MORPH, index % N_MORPH
        object_keys = sample_keys(self.seed, TEST_EPOCH, base)
        keys = sample_keys(self.seed, TEST_EPOCH, index + (1 << 40))
        labels = {OBJECT: draw_factors(object_keys)[OBJECT], "colour": draw_factors(keys)["colour"]}
        rest = variant
        for f in reversed(MORPHOLOGICAL_FACTORS):
            labels[f] = rest % len(FACTORS[f])
            rest = rest // len(FACTORS[f])
        return self._assemble(keys, object_keys, labels, train=False, full_captions=True, defer=defer, layout=self._layout(keys, forced=False))

    def _assemble(self, keys, object_keys, labels, *, train: bool, full_captions: bool, defer: bool = False,
                  layout: Optional[dict[str, np.ndarray]] = None) -> dict:
        source = self.glyphs(train)
        batch = {"text": self.texts(keys, labels, self.caption, layout)}
        if full_captions:
            batch["text_full"] = self.texts(keys, labels, CaptionSpec(len(self.caption.others), self.caption.always_present), layout)
        batch["labels"] = {f: torch.from_numpy(np.ascontiguousarray(labels[f])) for f in FACTOR_NAMES}
        if layout is not None:
            batch["layout"] = {f: torch.from_numpy(np.ascontiguousarray(layout[f])) for f in LAYOUT_NAMES}
        todo = {"glyphs": source.glyphs(object_keys, labels[OBJECT]), **render_plan(object_keys, jitter=source.jitter, layout=layout is not None),
                "dense": self.dense}
        batch[DEFERRED] = todo
        return batch if defer else finish_render(batch)

    def concept_samples(self, factor: str, values, n: int) -> dict:
        """``n`` samples of a concept ("objects 0, 1, 2", "colours red, yellow"): ``factor`` cycles through
        ``values`` and every other factor is balanced: value i mod (its number of values), in a random
        order (so two concepts of n = 42 = 2 x 3 x 7 samples hold every colour, thickness, ... equally
        often and differ only in their own factor); rendered images and full captions (every factor
        named) of the same samples, from keys of their own (not training, validation or prompt
        samples), one stream per (factor, values)."""
        import zlib

        check_factor(factor)
        idx = np.array([value_index(factor, v) for v in values], dtype=np.int64)
        if len(idx) == 0 or n < 1:
            raise ValueError(f"a concept of {factor!r} needs at least one value and one sample")
        salt = zlib.crc32(f"{factor}:{','.join(map(str, idx))}".encode()) << 20
        keys = sample_keys(self.seed, CONCEPT_EPOCH, np.arange(n, dtype=np.int64) + salt)
        order = np.argsort(hash_uniform(keys, STREAM["factors"], len(FACTOR_NAMES)), axis=0)  # a random order per factor
        labels = {f: (order[:, i] % len(FACTORS[f])).astype(np.int64) for i, f in enumerate(FACTOR_NAMES)}
        labels[factor] = idx[np.arange(n) % len(idx)]
        return self._assemble(keys, keys, labels, train=True, full_captions=True, layout=self._layout(keys, forced=False))

    def class_prompts(self, factor: str, n_per_value: int = 32, mode: str = "full") -> torch.Tensor:
        """Texts standing for each value of ``factor``: (n_values, n, context) tokens.

        ``full``: captions naming every factor, ``factor`` fixed to the value and the others drawn
        uniformly (the caption distribution of a model trained at k = all); ``word``: the single word.
        """
        check_factor(factor)
        n_values = len(FACTORS[factor])
        if mode == "word":
            n_per_value = 1
        elif mode != "full":
            raise ValueError(f"unknown prompt mode {mode!r}; use 'full' or 'word'")
        index = np.arange(n_values * n_per_value)
        keys = sample_keys(self.seed, PROMPT_EPOCH, index + (FACTOR_NAMES.index(factor) << 32))
        labels = draw_factors(keys)
        labels[factor] = index // n_per_value
        spec = CaptionSpec(len(FACTOR_NAMES) - 1, factor) if mode == "full" else CaptionSpec(0, factor)
        texts = self.texts(keys, labels, spec, self._layout(keys, forced=False) if mode == "full" else None)
        return texts.reshape(n_values, n_per_value, -1)


DEFERRED = "render"  # the batch key of images not rendered yet: base glyphs, the render plan and ``dense``


def finish_render(batch: dict) -> dict:
    """Render the images of a deferred batch (``train_batch(..., defer=True)``) on the device its
    tensors are on: ``image``, and ``mask`` and ``depth`` if the source renders dense targets. A batch
    with its images already rendered is returned as it is."""
    todo = batch.pop(DEFERRED, None)
    if todo is not None:
        todo = dict(todo)
        glyphs, dense = todo.pop("glyphs"), bool(todo.pop("dense"))
        batch.update(render_images(glyphs, todo, batch["labels"], dense=dense, layout=batch.get("layout")))
    return batch


# ---------------------------------------------------------------------------------------------
class SyntheticBatches(IterableDataset):
    """Whole rendered batches of one split, for one rank; workers take batches in turn.

    ``train``: global batch b of an epoch holds indices [b*B*W, (b+1)*B*W) and rank r its slice
    [b*B*W + r*B, b*B*W + (r+1)*B) (drop_last); ``start_batch`` skips batches already trained on
    (exact mid-epoch resume). ``val``/``test``: batch j goes to rank j % W, the last one may be short.
    ``defer``: batches carry their render plan instead of images (see ``finish_render``).
    """

    def __init__(self, source: SyntheticSource, split: str, num_samples: int, batch_size: int, rank: int = 0, world_size: int = 1,
                 defer: bool = False):
        if split not in ("train", "val", "test"):
            raise ValueError(f"unknown split {split!r}")
        self.source, self.split, self.num_samples, self.batch_size = source, split, num_samples, batch_size
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start_batch = 0, 0
        self.defer = defer

    def __len__(self) -> int:
        if self.split == "train":
            return self.num_samples // (self.batch_size * self.world_size)
        total = math.ceil(self.num_samples / self.batch_size)
        return len(range(self.rank, total, self.world_size))

    def batch_indices(self, j: int) -> np.ndarray:
        """Sample indices of this rank's local batch ``j``."""
        if self.split == "train":
            start = j * self.batch_size * self.world_size + self.rank * self.batch_size
            return np.arange(start, start + self.batch_size)
        g = self.rank + j * self.world_size
        return np.arange(g * self.batch_size, min((g + 1) * self.batch_size, self.num_samples))

    def make_batch(self, j: int) -> dict:
        index = self.batch_indices(j)
        if self.split == "train":
            return self.source.train_batch(self.epoch, index, defer=self.defer)
        return (self.source.val_batch if self.split == "val" else self.source.test_batch)(index, defer=self.defer)

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        for j in range(self.start_batch + worker, len(self), workers):
            yield self.make_batch(j)


class _PositionedLoader(DataLoader):
    """A DataLoader that asks where to start (epoch, first batch) each time it is iterated."""

    def __init__(self, dataset: SyntheticBatches, position: Callable[[], tuple[int, int]], **kwargs):
        super().__init__(dataset, batch_size=None, **kwargs)
        self._position = position

    def __iter__(self):
        self.dataset.epoch, self.dataset.start_batch = self._position()
        return super().__iter__()


class SyntheticDataModule(pl.LightningDataModule):
    """Train/val/test loaders of the synthetic data; each batch holds ``image``, ``text`` (k attributes),
    ``labels`` (every factor), and for val/test ``text_full`` (every factor named).

    Args:
        k: attribute factors named in each training caption besides the always-present one (0..5).
        always_present: the factor every caption names (``object``; the caption-presence-bias knob).
        batch_size: per device.
        num_workers: loader workers (the stream does not depend on it).
        train_size: samples per training epoch (reference: 60,000).
        val_size: fixed validation samples (loss and the metrics callback's evaluation set).
        test_base: base test objects, each in all 24 morphological variants (reference: 10,000).
        seed: the data seed; every sample is a function of (seed, epoch, index). None (default): the
            run's ``seed_everything``.
        tokenizer: ``word`` (one token per factor value) or an open_clip model name whose tokenizer
            encodes the captions as plain strings (BPE).
        cooccurrence: ``{object, factor, value, p}``: P(factor = value | object) = p in training data;
            ``object`` and ``value`` may be lists (P(factor in values | object in objects) = p), and
            ``cooccurrence`` a list of such entries (see ``infogap.data.factors.parse_cooccurrence``).
        dense_targets: also yield the per-pixel targets of the dense probes: the object ``mask``, ``edge``
            (0 background, 1 stroke interior, 2 boundary), ``depth`` (a random surface per sample, no
            factor's function) and ``scale_depth`` (decided by the scaling factor).
        glyph_set: the font faces of the glyphs: ``train``, or ``held_out`` (faces no default run sees:
            the out-of-domain images of the learn/forget study).
        mnist_dir: render real MNIST digits from IDX files in this local directory instead of font glyphs.
        layout: the layout world: each object placed in a ``SCENE_SIZE``-px scene by three layout words
            (position cell, size class, depth plane; ``infogap.data.factors.LAYOUT_FACTORS``), batches
            carrying their labels in ``layout``; the word vocabulary gains the layout words.
        layout_words: (layout world) captions name the three layout words besides the k + 1; off: the
            same scenes under captions that do not describe them (the dense study's axis).
        render_on_device: the loader workers draw labels, captions and every random number of a batch
            and the images are rendered on the training device (``on_after_batch_transfer``), so a
            small model on a GPU does not wait for CPU workers; the same samples as rendering in the
            workers, to float tolerance (bit-identical on the CPU).
    """

    def __init__(
        self,
        k: int = 5,
        always_present: str = OBJECT,
        batch_size: int = 128,
        num_workers: int = 0,
        train_size: int = 60_000,
        val_size: int = 2_048,
        test_base: int = 10_000,
        seed: Optional[int] = None,
        tokenizer: str = "word",
        cooccurrence: Optional[Union[dict, list[dict]]] = None,
        dense_targets: bool = False,
        glyph_set: str = "train",
        mnist_dir: Optional[str] = None,
        render_on_device: bool = False,
        layout: bool = False,
        layout_words: bool = True,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.render_on_device = render_on_device
        for name, value in dict(batch_size=batch_size, train_size=train_size, val_size=val_size, test_base=test_base).items():
            if value < 1:
                raise ValueError(f"data.{name} must be positive, got {value}")
        if num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {num_workers}")
        if glyph_set not in GLYPH_SETS:
            raise ValueError(f"data.glyph_set must be one of {', '.join(GLYPH_SETS)}, got {glyph_set!r}")
        self.source = SyntheticSource(
            seed=run_seed(seed),
            caption=CaptionSpec(k, always_present),
            cooccurrence=parse_cooccurrence(cooccurrence),
            dense=dense_targets,
            glyph_set=glyph_set,
            mnist_dir=mnist_dir,
            layout=layout,
            layout_words=layout_words,
            tokenizer=None if tokenizer == "word" else _open_clip_tokenizer(tokenizer),
        )
        if mnist_dir:
            self.source.glyphs(True)  # fail now, naming the file, if the directory is wrong
        self.batch_size, self.num_workers = batch_size, num_workers
        self.train_size, self.val_size, self.test_size = train_size, val_size, test_base * N_MORPH

    @property
    def image_size(self) -> int:
        """Pixels per side of every rendered image."""
        return self.source.image_size

    @property
    def text_spec(self) -> Optional[dict]:
        """The word vocabulary the text tower must use, or None for a BPE tokenizer."""
        return self.source.vocab.text_spec() if self.source.tokenizer is None else None

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _train_position(self) -> tuple[int, int]:
        """(epoch, first batch) for the next pass over the training data, from the trainer's progress:
        on a restart mid-epoch, skip the batches the checkpoint already trained on."""
        trainer = self.trainer
        if trainer is None:
            return 0, 0
        loop = trainer.fit_loop
        epoch = loop.epoch_progress.current.processed
        start = 0
        if loop.restarting:
            start = loop.epoch_loop.batch_progress.current.processed
            if start >= trainer.num_training_batches:
                epoch, start = epoch + 1, 0
            if start and not getattr(self, "_said_resume", False):
                self._said_resume = True
                rank_zero_info(f"data: resumed mid-epoch at epoch {epoch}, batch {start}: the batches already trained are skipped, "
                               "so the samples and their order equal an uninterrupted run's")
        return epoch, start

    def _loader(self, split: str, size: int, position: Callable[[], tuple[int, int]]) -> DataLoader:
        rank, world = self._rank_world()
        dataset = SyntheticBatches(self.source, split, size, self.batch_size, rank, world, defer=self.render_on_device)
        # no persistent workers: each pass tells its workers where to start (epoch, batch)
        return _PositionedLoader(dataset, position, num_workers=self.num_workers, pin_memory=pin_memory(self.trainer))

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        return finish_render(batch)

    def train_dataloader(self) -> DataLoader:
        import warnings

        # Lightning warns on every mid-epoch resume that a loader without state_dict may repeat or skip samples;
        # this one resumes exactly (``_train_position``: the same samples in the same order as an uninterrupted
        # run, tested in tests/test_train_faults.py), so the warning would only mislead
        warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended before the epoch ended")
        return self._loader("train", self.train_size, self._train_position)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.val_size, lambda: (0, 0))

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.test_size, lambda: (0, 0))

    # --- what the metrics callback needs -------------------------------------------------------
    EVAL_SPLITS = ("val", "test")  # the splits an evaluation set can be drawn from (``infogap test``: the test split)

    def eval_size(self, n: int, split: str = "val") -> int:
        """How many of the first ``n`` samples of ``split`` the evaluation set can have."""
        return min(n, self.val_size if split == "val" else self.test_size)

    def eval_samples(self, index: np.ndarray, split: str = "val") -> dict:
        """Samples of ``split`` (validation by default) by index (full captions in ``text_full``), for the metrics callback."""
        index = np.asarray(index)
        size = self.val_size if split == "val" else self.test_size
        if len(index) and int(index.max()) >= size:
            has = f"data.val_size is {size}" if split == "val" else f"the test split has {size} samples"
            raise ValueError(f"evaluation asks for {split} sample {int(index.max())} but {has}")
        return (self.source.val_batch if split == "val" else self.source.test_batch)(index)

    def class_prompts(self, factor: str, n_per_value: int = 32, mode: str = "full") -> torch.Tensor:
        return self.source.class_prompts(factor, n_per_value, mode)


def pin_memory(trainer) -> bool:
    """Page-locked loader batches, for asynchronous (non-blocking) copies, when training on CUDA GPUs."""
    from pytorch_lightning.accelerators import CUDAAccelerator

    return trainer is not None and isinstance(trainer.accelerator, CUDAAccelerator)


def _open_clip_tokenizer(name: str):
    import open_clip

    if name not in open_clip.list_models():
        raise ValueError(f"unknown tokenizer {name!r}: use 'word' or an open_clip model name such as ViT-B-32")
    return open_clip.get_tokenizer(name)
