"""``infogap analyze learn-forget`` (Niss et al., arXiv 2407.15731; docs/results/learn_forget.md): does the zero-shot IIMM of a model on a task predict what
fine-tuning on it gains and what it forgets elsewhere? Any local models and labelled image folders,
with the same measures, fine-tunes and fits as ``infogap ablate learn_forget``::

    infogap analyze learn-forget --checkpoint runs/a/checkpoints/last.ckpt --checkpoint runs/b/checkpoints/last.ckpt
    infogap analyze learn-forget --model ViT-B-32=/models/b32_laion.pt --model ViT-B-32=/models/b32_openai.pt \
        --folder /data/pets --folder /data/flowers --no-synthetic --out results/learn_forget_local

Each model is fine-tuned on every task (the six synthetic factors, rendered for the model, unless
``--no-synthetic``; each ``--folder``, ImageFolder layout, split per class into training and evaluation
images). Writes ``learn_forget.json`` (every model's measures and fine-tunes), ``points.csv``, ``fits.csv``
and the scatter figure.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from infogap.ablations.kit.results import write_rows
from infogap.ablations.learn_forget.finetune import folder_task, synthetic_tasks
from infogap.ablations.learn_forget.study import METHODS, Settings, choose_lr, fit_claims, lr_search, measure, points, scatter, write_fits
from infogap.data.factors import FACTOR_NAMES
from infogap.train.embed import load_encoder

DEFAULT = Settings()


def _model_spec(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name:
        raise ValueError(f"--model {text!r}: give NAME=PATH (an open_clip model and its local checkpoint; NAME= for random weights)")
    return name, path


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="infogap analyze learn-forget", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", action="append", default=[], help="an infogap run's checkpoint (repeatable)")
    p.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                   help="an open_clip model and its local checkpoint (repeatable)")
    p.add_argument("--folder", action="append", default=[], help="a labelled image folder as a task (repeatable; BPE models)")
    p.add_argument("--templates", default="a photo of a {}.", help="class prompt templates for --folder, separated by |")
    p.add_argument("--no-synthetic", action="store_true", help="leave out the six synthetic factor tasks")
    p.add_argument("--methods", default=",".join(DEFAULT.methods), help=f"fine-tuning methods of {','.join(METHODS)} (default {','.join(DEFAULT.methods)})")
    p.add_argument("--seeds", default=",".join(map(str, DEFAULT.finetune_seeds)), help="fine-tuning seeds (default 0,1,2)")
    p.add_argument("--epochs", type=int, default=DEFAULT.epochs, help=f"fine-tuning epochs per task (default {DEFAULT.epochs}, the authors')")
    p.add_argument("--lr-search", action="store_true",
                   help="instead of the study: fine-tune each model on each task at every learning rate of the grid (LR_GRID) with the "
                        "first seed, and write lr_search.csv with the rate of the best mean validation accuracy per method")
    p.add_argument("--n-train", type=int, default=DEFAULT.n_train, help="synthetic training images per task")
    p.add_argument("--n-eval", type=int, default=DEFAULT.n_eval, help="synthetic evaluation images per task")
    p.add_argument("--out", default="results/learn_forget_local")
    args = p.parse_args(argv)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"--methods: unknown method {unknown[0] if unknown else '(none)'}; choose from {', '.join(METHODS)}")
    seeds = tuple(int(x) for x in args.seeds.split(","))
    settings = dataclasses.replace(DEFAULT, methods=methods, finetune_seeds=seeds, epochs=args.epochs, n_train=args.n_train, n_eval=args.n_eval)
    if not args.checkpoint and not args.model:
        raise ValueError("give models: --checkpoint CKPT (infogap runs) and/or --model NAME=PATH (open_clip)")
    if args.no_synthetic and not args.folder:
        raise ValueError("--no-synthetic leaves no task: add --folder DIR")
    templates = [t.strip() for t in args.templates.split("|") if t.strip()]
    models = [(c, dict(checkpoint=c)) for c in args.checkpoint] + [(f"{n}={path}", dict(model=n, pretrained=path or None)) for n, path in map(_model_spec, args.model)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results, table = {}, []
    for label, spec in models:
        enc = load_encoder(**spec)
        if args.folder and enc.word_level:
            raise ValueError(f"{label}: a word-level synthetic model cannot read the class prompts of --folder (use BPE models)")
        tasks = [] if args.no_synthetic else synthetic_tasks(enc, FACTOR_NAMES, settings.n_train, settings.n_eval, settings.prompts,
                                                             settings.templates, settings.ood, images=settings.task_images)
        tasks += [folder_task(enc, folder, templates) for folder in args.folder]
        names = [t.name for t in tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"two tasks share a name: {sorted(names)} (folders are named by their last part)")
        if args.lr_search:
            table += [{"model": label, **r} for r in lr_search(enc, tasks, settings, seed=seeds[0])]
            continue
        print(f"{label}: {len(tasks)} tasks x {len(methods)} methods x {len(seeds)} seeds", file=sys.stderr, flush=True)
        results[label] = measure(enc, tasks, settings)
        table += [{"model": label, **pt} for pt in points(results[label])]
    if args.lr_search:
        write_rows(table, out / "lr_search.csv")
        for method, lr in choose_lr(table).items():
            print(f"{method}: lr {lr:g} (the best mean validation accuracy over {len(models)} models x the tasks)")
        print(f"\ntable: {out / 'lr_search.csv'}", file=sys.stderr)
        return 0
    (out / "learn_forget.json").write_text(json.dumps(results, indent=1) + "\n")
    write_rows(table, out / "points.csv")
    write_fits(table, out / "fits.csv")
    figure = scatter(table, out / "learn_forget_vs_iimm.png", "model")
    for claim in fit_claims(table):
        print(claim.line())
    print(f"\npoints: {out / 'points.csv'}\nfits:   {out / 'fits.csv'}\nfigure: {figure}", file=sys.stderr)
    return 0
