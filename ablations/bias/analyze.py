"""``infogap analyze eat``: embedding association tests (EAT) of a model's image and text embeddings
(Ghate et al., NAACL 2025; the effect size and p-value are ``infogap.ablations.bias.eat.eat_test``).

    infogap analyze eat --embeddings sets.npz                 # arrays X, Y, A, B: one JSON object
    infogap analyze eat --tests configs/bias/synthetic_tests.yaml --checkpoint runs/x/checkpoints/last.ckpt
    infogap analyze eat --tests my_tests.yaml --model ViT-B-16 --pretrained /models/b16.pt --out results/eat

A tests YAML names, per test, its target sets X, Y and attribute sets A, B. A set is a list of texts
(``texts:``), a folder of images (``images:``, searched recursively), both, or a concept of the
synthetic data (``factor:`` and ``values:``; rendered images and their full captions, every other
factor balanced: ``n`` samples, default 42)::

    tests:
      - name: objects_colour
        X: {factor: object, values: [0, 1, 2]}
        Y: {factor: object, values: [7, 8, 9]}
        A: {factor: colour, values: [red, yellow]}
        B: {factor: colour, values: [blue, cyan]}

Every test is scored in each of the four modality combinations its sets allow: image targets with image
attributes, text with text, image targets with text attributes, text targets with image attributes.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from infogap.ablations.bias.eat import eat_test
from infogap.data.files import read_yaml
from infogap.train.embed import Encoder, load_encoder

SETS = ("X", "Y", "A", "B")
# name -> (modality of the targets X, Y; modality of the attributes A, B)
COMBINATIONS = {"image-image": ("image", "image"), "text-text": ("text", "text"),
                "image-text": ("image", "text"), "text-image": ("text", "image")}
CONCEPT_SAMPLES = 42


# --- tests ----------------------------------------------------------------------------------------
def load_tests(path: str | Path) -> list[dict]:
    """The tests of a YAML file, checked: every test has a name and the four sets, each set a list of
    texts, an image folder, or a synthetic concept. Relative folders are relative to the YAML file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--tests: no such file: {path}")
    spec = read_yaml(path, "--tests") or {}
    tests = spec.get("tests") if isinstance(spec, dict) else None
    if not tests:
        raise ValueError(f"{path}: needs a list under 'tests'")
    names = set()
    for i, test in enumerate(tests):
        name = test.get("name") if isinstance(test, dict) else None
        if not name:
            raise ValueError(f"{path}: test {i} has no 'name'")
        if name in names:
            raise ValueError(f"{path}: two tests are named {name!r}")
        names.add(name)
        for s in SETS:
            where = f"{path}: test {name!r}, set {s}"
            st = test.get(s)
            if not isinstance(st, dict) or not ({"texts", "images", "factor"} & set(st)):
                raise ValueError(f"{where}: needs texts:, images: or factor: with values:")
            unknown = set(st) - {"texts", "images", "factor", "values", "n"}
            if unknown:
                raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
            if "texts" in st and (not isinstance(st["texts"], list) or not st["texts"]):
                raise ValueError(f"{where}: texts is empty")
            if "factor" in st and not st.get("values"):
                raise ValueError(f"{where}: factor {st['factor']!r} needs a non-empty values: list")
            if "images" in st:
                folder = Path(st["images"])
                st["images"] = str(folder if folder.is_absolute() else path.parent / folder)
    return tests


def embed_set(enc: Encoder, st: dict, where: str) -> dict[str, np.ndarray]:
    """{modality: embeddings} of one set, for the modalities it has."""
    out: dict[str, list[np.ndarray]] = {"image": [], "text": []}
    if "factor" in st:
        try:
            batch = enc.source.concept_samples(str(st["factor"]), [str(v) for v in st["values"]], int(st.get("n", CONCEPT_SAMPLES)))
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        out["image"].append(enc.images(enc.rendered(batch["image"])))
        out["text"].append(enc.texts(batch["text_full"]))
    if "texts" in st:
        try:
            tokens = enc.tokenize([str(t) for t in st["texts"]])
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        out["text"].append(enc.texts(tokens))
    if "images" in st:
        out["image"].append(enc.images(enc.folder_images(st["images"], where)))
    return {m: np.concatenate(v) for m, v in out.items() if v}


def score_tests(enc: Encoder, tests: list[dict], permutations: int = 1_000_000, seed: int = 0) -> list[dict]:
    """One row per test and modality combination its sets allow: effect size, p-value and set sizes."""
    rows, done = [], {}  # a set several tests share (the same objects, colours) is embedded once
    for test in tests:
        emb = {}
        for s in SETS:
            spec = json.dumps(test[s], sort_keys=True)
            if spec not in done:
                done[spec] = embed_set(enc, test[s], f"test {test['name']!r}, set {s}")
            emb[s] = done[spec]
        for combo, (target, attribute) in COMBINATIONS.items():
            if not all(target in emb[s] for s in ("X", "Y")) or not all(attribute in emb[s] for s in ("A", "B")):
                continue
            sets = [emb["X"][target], emb["Y"][target], emb["A"][attribute], emb["B"][attribute]]
            result = eat_test(*sets, permutations=permutations, seed=seed)
            rows.append({"test": test["name"], "modality": combo, **result.as_dict(),
                         **{f"n_{s}": len(e) for s, e in zip(SETS, sets)}})
    return rows


def load_npz_sets(path: str | Path) -> list[np.ndarray]:
    from infogap.train.metrics import check_rows
    from infogap.train.metrics_cli import read_npz

    path = Path(path)
    f = read_npz(path, "--embeddings")
    missing = [s for s in SETS if s not in f]
    if missing:
        raise ValueError(f"{path}: needs arrays X, Y, A, B (rows are embeddings); missing {', '.join(missing)}")
    sets = [np.asarray(f[s], dtype=np.float64) for s in SETS]
    for s, a in zip(SETS, sets):
        if a.ndim != 2:
            raise ValueError(f"{path}: array {s} has shape {a.shape}; every set must be 2-D (rows are embeddings)")
        if a.shape[1] != sets[0].shape[1]:
            raise ValueError(f"{path}: array {s} has shape {a.shape}; every set must be (rows, {sets[0].shape[1]})")
        check_rows(a, f"{path}: array {s}")
    return sets


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="infogap analyze eat", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--embeddings", help="an .npz with arrays X, Y, A, B (rows: embeddings; normalised here)")
    src.add_argument("--tests", help="a tests YAML (see above)")
    p.add_argument("--checkpoint", help="with --tests: an infogap run's checkpoint")
    p.add_argument("--model", help="with --tests: an open_clip model name (or a small config)")
    p.add_argument("--pretrained", help="with --model: a local checkpoint (none: random initialisation)")
    p.add_argument("--permutations", type=int, default=1_000_000,
                   help="exact test up to this many partitions, else this many random ones (default 1000000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random partitions and of the rendered concepts")
    p.add_argument("--out", default="results/eat", help="with --tests: directory for eat.csv and eat.json")
    args = p.parse_args(argv)
    if args.embeddings:
        if args.checkpoint or args.model:
            raise ValueError("--embeddings takes no model (--checkpoint, --model): its embeddings are given")
        result = eat_test(*load_npz_sets(args.embeddings), permutations=args.permutations, seed=args.seed, exact_limit=args.permutations)
        print(json.dumps(result.as_dict()))
        return 0
    if bool(args.checkpoint) == bool(args.model):
        raise ValueError("--tests needs exactly one of --checkpoint CKPT or --model NAME [--pretrained PATH]")
    tests = load_tests(args.tests)
    enc = load_encoder(args.checkpoint, args.model, args.pretrained, seed=args.seed)
    rows = score_tests(enc, tests, args.permutations, args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "eat.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "eat.json").write_text(json.dumps({"model": args.checkpoint or args.model, "pretrained": args.pretrained,
                                              "tests": args.tests, "results": rows}, indent=2) + "\n")
    for r in rows:
        print(f"{r['test']:<24} {r['modality']:<12} d = {r['effect_size']:+.3f}  p = {r['p_value']:.4g}"
              f"{'' if r['exact'] else ' (sampled)'}  |X|={r['n_X']} |Y|={r['n_Y']} |A|={r['n_A']} |B|={r['n_B']}")
    print(f"\ntable: {out / 'eat.csv'}\njson:  {out / 'eat.json'}", file=sys.stderr)
    return 0
