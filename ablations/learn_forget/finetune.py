"""Learning and forgetting (Niss et al., arXiv 2407.15731): classification tasks, the zero-shot measures
that should predict what fine-tuning on a task gains and what the model forgets elsewhere (IIMM and
its parts, the gap, zero-shot accuracy), and the fine-tuning itself.

A ``Task`` is a labelled image set with class prompts: each factor of the synthetic data
(``synthetic_tasks``) or any local labelled image folder (``folder_task``, ImageFolder layout, class
prompts from templates). Class prompts name the task's class only (FLYP and the published protocol:
templates of the class name), never a value of another factor: a full synthetic caption with the
other factors drawn at random would teach every image wrong attribute words and manufacture
forgetting. For the word-level synthetic models the only template is the class word itself (every
other word of their vocabulary is a value of some factor); the full-caption ensemble stays available
as ``prompts="full"``, named in the report. Evaluation-only tasks on the held-out glyph set (images
no fine-tuning and no training run sees) measure forgetting out of domain.

``FineTune`` fine-tunes a CLIP on one task with one of four methods, all for the same number of epochs:

- ``full`` (the default, the authors' ``clip``): every weight of both towers, with cross-entropy of
  the scaled cosine logits of each image against every class's prompts;
- ``flyp``: every weight of both towers, with the contrastive loss between images and a prompt of
  their class (FLYP, Goyal et al. 2023: the fine-tuning loss is the pretraining loss);
- ``linear`` (the authors' ``probe``): a linear layer with bias on the frozen image tower's
  (unnormalised) features, PyTorch's default initialisation; cross-entropy;
- ``bitfit`` (the authors' ``bias`` with every block): only the bias terms of the residual blocks of
  both towers (Ben Zaken et al. 2022), with ``full``'s loss.

``finetune`` runs the authors' protocol (Niss et al. 2024, ``train.py`` and ``train_helpers.py`` of
mit-ll/IIMM): SGD with momentum 0.9 and weight decay 1e-4, a constant learning rate, 10 epochs of
batches of 128, 10 % of the training images held out, and the epoch of the best validation accuracy
kept. Their learning rate (1e-6) is for large pretrained models; the study's are chosen for these
small models by ``lr_search`` on a seed no claim uses. AdamW with warm-up and cosine stays an option.

``learn_forget`` turns accuracies before and after into the gain on the task and the change on the
other in-domain tasks and on the out-of-domain ones.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Literal, Optional, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss

from infogap.ablations.learn_forget.iimm import iimm_parts
from infogap.ablations.learn_forget.transfer import estimators
from infogap.train.embed import BATCH, encode
from infogap.train.evaluation import class_embeddings
from infogap.train.metrics import l2m, relative_modality_gap, zero_shot_accuracy
from infogap.train.module import no_weight_decay, warmup_cosine
from infogap.train.quiet import quiet_trainer

METHODS = ("full", "flyp", "linear", "bitfit")
OPTIMIZERS = ("sgd", "adamw")
BITFIT = re.compile(r"resblocks.*bias")  # the authors' ``bias`` variant: the biases of the residual blocks


@dataclass
class Task:
    """A classification task: images (as the model takes them) with labels, split into a training and an
    evaluation set, and class prompts (classes, prompts per class, context) as tokens."""

    name: str
    classes: list[str]
    prompts: torch.Tensor
    train_images: torch.Tensor
    train_labels: torch.Tensor
    eval_images: torch.Tensor
    eval_labels: torch.Tensor
    finetune: bool = True  # False: an evaluation-only (out-of-domain) task, never fine-tuned on

    def __post_init__(self):
        c = len(self.classes)
        if c < 2:
            raise ValueError(f"task {self.name!r}: a classification task needs at least two classes, got {c}")
        if self.prompts.shape[0] != c:
            raise ValueError(f"task {self.name!r}: {self.prompts.shape[0]} prompt sets for {c} classes")
        for split, images, labels in (("train", self.train_images, self.train_labels), ("eval", self.eval_images, self.eval_labels)):
            if len(images) != len(labels) or len(images) == 0:
                raise ValueError(f"task {self.name!r}: {len(images)} {split} images with {len(labels)} labels")


def synthetic_tasks(enc, factors: Sequence[str], n_train: int = 2048, n_eval: int = 1024, prompts: str = "class",
                    templates: Sequence[str] = ("{}",), ood: Sequence[str] = (), prompts_per_value: int = 8,
                    images: str = "own") -> list[Task]:
    """One task per factor of the synthetic data, for the model of ``enc`` (an ``infogap.train.embed.Encoder``):
    training images are the first ``n_train`` samples of training epoch 0, evaluation images the first
    ``n_eval`` validation samples. ``images="own"`` (default): each task draws them from a distribution
    of its own, as the paper's tasks are different datasets: the object and the task's factor vary,
    every other attribute is held (``task_force``: the morphology at its plain value, the colour at one
    of the task's own), so that S_intra, half of IIMM, differs between tasks. ``shared``:
    one image set for every factor, labelled by it. Class prompts (``class_prompts``): ``class`` names
    the class only, through ``templates``; ``full`` is the metrics callback's ensemble of captions
    naming every factor. Each factor of ``ood`` adds an evaluation-only task ``ood_<factor>``: the same
    draw with the held-out glyph set."""
    import dataclasses

    from infogap.data.factors import FACTORS, check_factor

    if images not in ("own", "shared"):
        raise ValueError(f"task images must be 'own' or 'shared', got {images!r}")
    for f in [*factors, *ood]:
        check_factor(f)
    out, drawn = [], {}
    for glyphs, names, finetune_on in (("train", factors, True), ("held_out", ood, False)):
        for f in names:
            force = task_force(f) if images == "own" else None
            key = (glyphs, tuple(sorted((force or {}).items())))
            if key not in drawn:  # one draw per distinct image set (``shared``: one per glyph set)
                source = dataclasses.replace(enc.source, glyph_set=glyphs, force=force)
                train, val = source.train_batch(0, np.arange(n_train)), source.val_batch(np.arange(n_eval))
                drawn[key] = (train, val, enc.rendered(train["image"]), enc.rendered(val["image"]))
            train, val, train_images, eval_images = drawn[key]
            out.append(Task(f if finetune_on else f"ood_{f}", list(FACTORS[f]), class_prompts(enc, f, prompts, templates, prompts_per_value),
                            train_images, train["labels"][f], eval_images, val["labels"][f], finetune=finetune_on))
    return out


def task_force(factor: str) -> dict[str, int]:
    """The attributes held in the images of ``factor``'s task (``synthetic_tasks(images="own")``): every
    attribute but the task's own, the morphological ones at their first, plain value ("no
    thickthinning", "no swelling", "no fracture", "large") and the colour at a vivid value of the task's
    own (1 + j mod 6 for factor j of ``FACTOR_NAMES``: never gray, and no two of the first six tasks
    alike). The object always varies."""
    from infogap.data.factors import ATTRIBUTE_FACTORS, FACTOR_NAMES, FACTORS

    j = FACTOR_NAMES.index(factor)
    held = {g: 0 for g in ATTRIBUTE_FACTORS if g != "colour"}
    held["colour"] = 1 + j % (len(FACTORS["colour"]) - 1)
    return {g: v for g, v in held.items() if g != factor}


def class_prompts(enc, factor: str, mode: str = "class", templates: Sequence[str] = ("{}",), prompts_per_value: int = 8) -> torch.Tensor:
    """(classes, prompts per class, context) tokens for a factor task. ``class``: each value's word
    through each template, nothing else; a word-level model reads only factor words, so its only
    template is ``{}`` (any other word would be a value of another factor). ``full``: captions naming
    every factor, the class's value fixed and the others drawn uniformly."""
    from infogap.data.factors import FACTORS

    if mode == "full":
        return enc.source.class_prompts(factor, prompts_per_value, "full")
    if mode != "class":
        raise ValueError(f"class prompts must be 'class' or 'full', got {mode!r}")
    if not templates or any("{}" not in t for t in templates):
        raise ValueError(f"class prompt templates need '{{}}' for the class name, got {list(templates)}")
    if enc.word_level:
        if list(templates) != ["{}"]:
            raise ValueError(f"a word-level model reads only the factor words: its class prompt is the class word alone (templates: ['{{}}']), "
                             f"got {list(templates)}")
        return enc.source.class_prompts(factor, 1, "word")
    return torch.stack([enc.tokenize([t.format(value) for t in templates]) for value in FACTORS[factor]])


def folder_task(enc, folder: str, templates: Sequence[str] = ("a photo of a {}.",), eval_fraction: float = 0.5, seed: int = 0,
                name: Optional[str] = None) -> Task:
    """A task from a local labelled image folder (``folder/<class>/<image>``): every image, preprocessed
    for the model, split per class into training and evaluation images (a fixed shuffle from ``seed``;
    at least one of each per class); class names are the sub-folder names with ``_`` read as a space,
    the prompts each template filled with the name. A missing folder, a folder without class
    sub-folders or a class without images is a one-line error naming it."""
    from pathlib import Path

    from infogap.data.webdata import image_folder_classes

    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    if not templates or any("{}" not in t for t in templates):
        raise ValueError(f"class prompt templates need '{{}}' for the class name, got {list(templates)}")
    classes = image_folder_classes(folder, "task folder")
    splits: dict[str, list] = {"train": [], "eval": []}
    for c, cls in enumerate(classes):
        images = enc.folder_images(str(Path(folder) / cls), f"task folder {folder}, class {cls!r}")
        if len(images) < 2:
            raise ValueError(f"task folder {folder}: class {cls!r} has {len(images)} image; it needs 2 (one to train, one to evaluate)")
        order = list(range(len(images)))
        random.Random(f"{seed}:{cls}").shuffle(order)
        n_eval = min(len(images) - 1, max(1, round(eval_fraction * len(images))))
        for split, idx in (("eval", order[:n_eval]), ("train", order[n_eval:])):
            splits[split].append((images[sorted(idx)], torch.full((len(idx),), c, dtype=torch.long)))
    names = [c.replace("_", " ") for c in classes]
    prompts = torch.stack([enc.tokenize([t.format(n) for t in templates]) for n in names])
    cat = {s: (torch.cat([i for i, _ in v]), torch.cat([l for _, l in v])) for s, v in splits.items()}
    return Task(name or Path(folder).name, names, prompts, *cat["train"], *cat["eval"])


# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def image_embeddings(model, images: torch.Tensor) -> torch.Tensor:
    """Unit image embeddings of ``model`` (eval mode, then back), in batches, on the CPU."""
    was_training = model.training
    model.eval()
    x = encode(model.encode_image, images, next(model.parameters()).device)
    model.train(was_training)
    return x


@torch.no_grad()
def zero_shot(model, task: Task, x: Optional[torch.Tensor] = None, x_train: Optional[torch.Tensor] = None) -> dict[str, float]:
    """Zero-shot measures of ``model`` on a task: accuracy on its evaluation images; IIMM =
    (S_inter + S_intra) / 2 and both parts on its training images (the reference's protocol) and, as
    ``iimm_eval``, on its evaluation images; the transferability estimators the paper compares IIMM
    with, on the training images (``transfer.estimators``: H-score, TransRate, GBC, SFDA, NCTI's parts); and the gap (RMG,
    L2M) between each evaluation image and its true class's embedding. ``x``, ``x_train``: the images' embeddings
    when already computed (several tasks share one image set)."""
    x = image_embeddings(model, task.eval_images) if x is None else x
    x_train = image_embeddings(model, task.train_images) if x_train is None else x_train
    was_training = model.training
    model.eval()
    classes = class_embeddings(lambda t: encode(model.encode_text, t, next(model.parameters()).device), task.prompts)
    model.train(was_training)
    inter, intra = iimm_parts(x_train, classes, task.train_labels)
    inter_eval, intra_eval = iimm_parts(x, classes, task.eval_labels)
    y = classes[task.eval_labels]
    return {"acc": zero_shot_accuracy(x, classes, task.eval_labels), "iimm": (inter + intra) / 2, "s_inter": inter, "s_intra": intra,
            "iimm_eval": (inter_eval + intra_eval) / 2, "rmg": relative_modality_gap(x, y), "l2m": l2m(x, y),
            **estimators(x_train.double().cpu().numpy(), task.train_labels.cpu().numpy())}


@torch.no_grad()
def zero_shot_acc(model, task: Task, x: Optional[torch.Tensor] = None) -> float:
    """Zero-shot accuracy of ``model`` on the task's evaluation images, with the task's class prompts."""
    x = image_embeddings(model, task.eval_images) if x is None else x
    was_training = model.training
    model.eval()
    classes = class_embeddings(lambda t: encode(model.encode_text, t, next(model.parameters()).device), task.prompts)
    model.train(was_training)
    return zero_shot_accuracy(x, classes, task.eval_labels)


def embedded_sets(model, tasks: Sequence[Task], split: str = "eval") -> dict[str, torch.Tensor]:
    """{task: its ``split`` images' embeddings}, each distinct image set embedded once (the synthetic
    factor tasks share theirs)."""
    by_set: dict[int, torch.Tensor] = {}
    for t in tasks:
        images = t.eval_images if split == "eval" else t.train_images
        if id(images) not in by_set:
            by_set[id(images)] = image_embeddings(model, images)
    return {t.name: by_set[id(t.eval_images if split == "eval" else t.train_images)] for t in tasks}


def zero_shots(model, tasks: Sequence[Task]) -> dict[str, dict[str, float]]:
    """``zero_shot`` of every task (``embedded_sets``)."""
    x, x_train = embedded_sets(model, tasks), embedded_sets(model, tasks, "train")
    return {t.name: zero_shot(model, t, x[t.name], x_train[t.name]) for t in tasks}


def accuracies(module: "FineTune", tasks: Sequence[Task]) -> dict[str, float]:
    """``module.accuracy`` of every task (``embedded_sets``)."""
    x = embedded_sets(module.model, tasks)
    return {t.name: module.accuracy(t, x[t.name]) for t in tasks}


def learn_forget(before: dict[str, float], after: dict[str, float], task: str, out_of_domain: Sequence[str] = ()) -> dict[str, float]:
    """Accuracy per task before and after fine-tuning on ``task``: ``gain`` = after - before on the task,
    ``relative_gain`` = gain / (1 - before) (the share of the zero-shot error removed; NaN when
    zero-shot is already perfect), ``off_task_change`` = mean over the other in-domain tasks of
    after - before and ``forgetting`` = its negative (positive when the model forgot); the same over
    the ``out_of_domain`` tasks as ``forgetting_ood`` (NaN without any), leaving out the fine-tuned
    task's own held-out-glyph version (``ood_<task>``): that is the task transferring to new glyphs, not
    another task being forgotten."""
    if task not in before or set(before) != set(after):
        raise ValueError(f"accuracies before {sorted(before)} and after {sorted(after)} must cover the same tasks, including {task!r}")
    others = [t for t in before if t != task and t not in out_of_domain]
    gain = after[task] - before[task]
    change = float(np.mean([after[t] - before[t] for t in others])) if others else float("nan")
    ood = [t for t in out_of_domain if t not in (task, f"ood_{task}")]
    ood_change = float(np.mean([after[t] - before[t] for t in ood])) if ood else float("nan")
    return {"gain": gain, "relative_gain": gain / (1 - before[task]) if before[task] < 1 else float("nan"),
            "off_task_change": change, "forgetting": -change, "forgetting_ood": -ood_change}


# ---------------------------------------------------------------------------------------------
def class_logits(model, images: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
    """Scaled cosine logits of ``images`` against every class of ``prompts`` (classes, prompts per class,
    context): the class embedding is the unit mean of its prompts' unit text embeddings, computed with
    gradients through the text tower (the authors' ``OpenCLIP`` wrapper: ``scale * img_f @ txt_f.T``,
    one prompt per class there)."""
    v, m, ctx = prompts.shape
    x = model.encode_image(images, normalize=True)
    t = model.encode_text(prompts.reshape(v * m, ctx), normalize=True).reshape(v, m, -1).mean(1)
    return model.logit_scale.exp() * x @ F.normalize(t, dim=-1).T


class FineTune(pl.LightningModule):
    """Fine-tune a CLIP model (an open_clip ``CLIP`` with ``output_dict=True``) on one task.

    Args:
        model: the model; ``full``, ``flyp`` and ``bitfit`` change it in place, ``linear`` leaves it untouched.
        prompts: the task's class prompts (classes, prompts per class, context) as tokens.
        method: ``full``, ``flyp``, ``linear`` or ``bitfit`` (see the module docstring).
        task: the task's name: ``accuracy`` uses the linear head on it.
        optimizer: ``sgd`` (the authors': momentum 0.9, ``weight_decay`` on every trained parameter, a
            constant learning rate) or ``adamw`` (linear warm-up over ``warmup_steps`` then cosine over the
            run; gains, biases and the logit scale without weight decay; the linear head and bias-only
            training without any).
        early_epochs: also keep, in ``early`` (best epoch, state), what a fine-tune of only this many epochs
            returns: the best validation epoch among the first ``early_epochs`` (the last of them without a
            validation set). Only with ``sgd``, whose constant learning rate makes the first epochs of a long
            run those of a short one (same seed, same batches); an ``adamw`` schedule depends on the run's
            length.
    """

    def __init__(self, model, prompts: torch.Tensor, method: Literal["full", "flyp", "linear", "bitfit"] = "full", task: str = "",
                 lr: float = 1e-4, optimizer: Literal["sgd", "adamw"] = "sgd", weight_decay: float = 1e-4, warmup_steps: int = 10,
                 early_epochs: Optional[int] = None):
        super().__init__()
        if early_epochs is not None and optimizer != "sgd":
            raise ValueError(f"early_epochs needs the constant-rate sgd (an {optimizer} schedule depends on the run's length)")
        if method not in METHODS:
            raise ValueError(f"fine-tuning method must be one of {', '.join(METHODS)}, got {method!r}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"fine-tuning optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
        self.save_hyperparameters(ignore=["model", "prompts"])
        self.model, self.method, self.task = model, method, task
        self.register_buffer("prompts", prompts, persistent=False)
        self.loss_fn = ClipLoss()
        self.val_correct: list[torch.Tensor] = []
        self.val_accs: list[float] = []  # validation accuracy after each epoch
        self.best_epoch, self._best = -1, None  # the epoch kept (0-based) and its trained state
        self.early_epochs, self.early = early_epochs, None  # what a fine-tune of early_epochs epochs keeps: (best epoch, state)
        if method == "linear":
            self.model.requires_grad_(False)
            self.model.eval()
            width = model.visual.output_dim
            self.head = torch.nn.Linear(width, prompts.shape[0]).to(next(model.parameters()).device)
        else:
            self.model.train()
            for name, p in self.model.named_parameters():
                p.requires_grad_(method != "bitfit" or bool(BITFIT.search(name)))

    def train(self, mode: bool = True):
        super().train(mode)
        if self.method == "linear":
            self.model.eval()  # the frozen tower stays in eval mode (no dropout)
        return self

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """The classifier's logits: the linear head's on the image features, or the model's against every class's prompts."""
        if self.method != "linear":
            return class_logits(self.model, images, self.prompts)
        with torch.no_grad():  # the tower is frozen
            x = self.model.encode_image(images)
        return self.head(x.float())

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        if self.method == "flyp":
            # FLYP: each image against a prompt of its class, drawn among the class's prompts, with the pretraining loss
            pick = torch.randint(self.prompts.shape[1], (len(labels),), device=labels.device)
            out = self.model(images, self.prompts[labels, pick])
            loss = self.loss_fn(out["image_features"], out["text_features"], out["logit_scale"])
        else:
            loss = F.cross_entropy(self.logits(images), labels)
        self.log("finetune/loss", loss, prog_bar=True, batch_size=len(labels))
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        images, labels = batch
        self.val_correct.append((self.logits(images).argmax(1) == labels).cpu())

    def on_validation_epoch_end(self) -> None:
        """Keep the epoch with the best validation accuracy (the authors' ``train``: after each epoch, an
        accuracy strictly above the best so far, which starts at 0, saves the model, so the first epoch
        is always kept); ``on_fit_end`` loads it back."""
        acc = float(torch.cat(self.val_correct).float().mean())
        self.val_correct.clear()
        self.val_accs.append(acc)
        if self._best is None or acc > max(self.val_accs[:-1]):
            self.best_epoch, self._best = len(self.val_accs) - 1, self.trained_state()
        if len(self.val_accs) == self.early_epochs:
            self.early = (self.best_epoch, self._best)

    def on_train_epoch_end(self) -> None:
        # without a validation set a run keeps its last epoch; with one, on_validation_epoch_end keeps ``early``
        if self.early_epochs is not None and self.current_epoch + 1 == self.early_epochs and not sum(self.trainer.num_val_batches):
            self.early = (self.current_epoch, self.trained_state())

    def on_fit_end(self) -> None:
        if self._best is not None:
            self.load_trained_state(self._best)
            self._best = None

    def configure_optimizers(self):
        h = self.hparams
        if self.method == "linear":
            groups = [{"params": list(self.head.parameters()), "weight_decay": h.weight_decay if h.optimizer == "sgd" else 0.0}]
        elif h.optimizer == "sgd":  # the authors': one group, every trained parameter decayed
            groups = [{"params": [p for p in self.model.parameters() if p.requires_grad], "weight_decay": h.weight_decay}]
        else:
            decay, no_decay = [], []
            for name, p in self.model.named_parameters():
                if p.requires_grad:
                    (no_decay if no_weight_decay(name, p) else decay).append(p)
            groups = [{"params": decay, "weight_decay": h.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        groups = [g for g in groups if g["params"]]
        if h.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=h.lr, momentum=0.9)
        optimizer = torch.optim.AdamW(groups, lr=h.lr)
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(h.warmup_steps, total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def trained_state(self) -> dict[str, torch.Tensor]:
        """A copy of what the fine-tune changes: the head (``linear``) or the model's weights."""
        state = self.head.state_dict() if self.method == "linear" else self.model.state_dict()
        return {k: v.detach().clone() for k, v in state.items()}

    def load_trained_state(self, state: dict[str, torch.Tensor]) -> None:
        (self.head if self.method == "linear" else self.model).load_state_dict(state)

    @torch.no_grad()
    def accuracy(self, task: Task, x: Optional[torch.Tensor] = None) -> float:
        """Accuracy on a task's evaluation images: the linear head on the task it was trained on,
        zero-shot with the task's class prompts on any other task (and for the other methods; ``x``:
        the images' embeddings when already computed)."""
        if self.method != "linear" or task.name != self.task:
            return zero_shot_acc(self.model, task, x)
        device = self.head.weight.device
        preds = torch.cat([self.logits(task.eval_images[i: i + BATCH].to(device)).argmax(1).cpu()
                           for i in range(0, len(task.eval_images), BATCH)])
        return float((preds == task.eval_labels).float().mean())


def split_validation(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training, validation) indices of ``n`` training images: a fixed shuffle from ``seed``, the first
    round(fraction · n) held out for validation (at least one when ``fraction`` > 0, and at least one
    left to train on); ``fraction`` 0 holds none out."""
    if not 0 <= fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {fraction}")
    order = np.random.default_rng(seed).permutation(n)
    m = 0 if fraction == 0 else min(n - 1, max(1, round(fraction * n)))
    return np.sort(order[m:]), np.sort(order[:m])


def finetune(model, task: Task, method: str, epochs: int, batch_size: int = 128, lr: float = 1e-4, seed: int = 0, optimizer: str = "sgd",
             weight_decay: float = 1e-4, val_fraction: float = 0.1, warmup_steps: int = 10, accelerator: str = "auto",
             early_epochs: Optional[int] = None) -> FineTune:
    """Fine-tune ``model`` on ``task`` for ``epochs`` passes over its training images less a held-out
    ``val_fraction`` of them (``split_validation``), in a shuffled order fixed by ``seed``, batches of
    ``batch_size`` (the last one smaller), and keep the epoch of the best validation accuracy
    (``FineTune.on_validation_epoch_end``; the last epoch without a validation set). The authors' protocol (Niss et al. 2024,
    ``train.py``): 10 epochs, batch 128, SGD with momentum 0.9 and weight decay 1e-4, 10 % held out. The
    module's ``best_epoch`` and ``val_accs`` say which epoch was kept and why; ``early_epochs`` (sgd only)
    also keeps what a run of that many epochs would return, in ``module.early`` (see ``FineTune``)."""
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}")
    if not task.finetune:
        raise ValueError(f"task {task.name!r} is evaluation-only (out of domain): it is never fine-tuned on")
    pl.seed_everything(seed, verbose=False)
    module = FineTune(model, task.prompts, method, task.name, lr=lr, optimizer=optimizer, weight_decay=weight_decay, warmup_steps=warmup_steps,
                      early_epochs=early_epochs)
    train_idx, val_idx = split_validation(len(task.train_images), val_fraction, seed)
    data = torch.utils.data.TensorDataset(task.train_images[train_idx], task.train_labels[train_idx])
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    val = None
    if len(val_idx):
        val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(task.train_images[val_idx], task.train_labels[val_idx]), batch_size=BATCH)
    quiet_trainer(-1, accelerator, max_epochs=epochs, limit_val_batches=1.0 if val is not None else 0).fit(module, loader, val)
    module.eval()
    if val is None:
        module.best_epoch = epochs - 1
    return module
