"""Learning and forgetting (Niss et al. 2024): tasks, zero-shot measures, the three fine-tuning methods and the gain/forgetting bookkeeping."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from infogap.ablations.learn_forget.finetune import (
    FineTune,
    Task,
    accuracies,
    finetune,
    folder_task,
    image_embeddings,
    learn_forget,
    synthetic_tasks,
    zero_shot,
)
from infogap.train.embed import load_encoder


@pytest.fixture(scope="module")
def tasks(encoder):
    return synthetic_tasks(encoder(), ["object", "colour"], n_train=256, n_eval=128, prompts_per_value=2)


def test_learn_forget_bookkeeping_by_hand():
    before, after = {"a": 0.6, "b": 0.8}, {"a": 0.9, "b": 0.7}
    out = learn_forget(before, after, "a")
    assert out["gain"] == pytest.approx(0.3) and out["relative_gain"] == pytest.approx(0.75)
    assert out["off_task_change"] == pytest.approx(-0.1) and out["forgetting"] == pytest.approx(0.1)
    three = learn_forget({"a": 0.5, "b": 0.8, "c": 0.4}, {"a": 0.75, "b": 0.6, "c": 0.5}, "a")
    assert three["off_task_change"] == pytest.approx((-0.2 + 0.1) / 2) and three["relative_gain"] == pytest.approx(0.5)
    assert np.isnan(learn_forget({"a": 1.0, "b": 0.5}, {"a": 1.0, "b": 0.5}, "a")["relative_gain"])
    with pytest.raises(ValueError, match="same tasks"):
        learn_forget({"a": 0.5}, {"a": 0.6, "b": 0.1}, "a")


def test_zero_shot_measures_against_a_hand_computation(encoder, tasks):
    enc = encoder()
    task = tasks[1]
    got = zero_shot(enc.model, task)
    x = torch.from_numpy(enc.images(task.eval_images)).double()
    emb = torch.from_numpy(enc.texts(task.prompts.flatten(0, 1))).double().view(len(task.classes), task.prompts.shape[1], -1).mean(1)
    classes = emb / emb.norm(dim=1, keepdim=True)
    lab = task.eval_labels
    sims = x @ classes.T
    assert got["acc"] == pytest.approx(float((sims.argmax(1) == lab).double().mean()))

    def by_hand(images, labels):
        sims = images @ classes.T
        wrong = torch.ones_like(sims, dtype=torch.bool)
        wrong[torch.arange(len(images)), labels] = False
        n = len(images)
        return float((sims * wrong).sum(1).div(len(task.classes) - 1).mean()), float(((images @ images.T).sum() - (images * images).sum()) / (n * (n - 1)))

    inter, intra = by_hand(torch.from_numpy(enc.images(task.train_images)).double(), task.train_labels)  # the reference: training images
    assert got["s_inter"] == pytest.approx(inter, abs=1e-5) and got["s_intra"] == pytest.approx(intra, abs=1e-5)
    assert got["iimm"] == pytest.approx((inter + intra) / 2, abs=1e-5)
    assert got["iimm_eval"] == pytest.approx(sum(by_hand(x, lab)) / 2, abs=1e-5)
    gap = x.mean(0) - classes[lab].mean(0)
    assert got["l2m"] == pytest.approx(float(gap.norm()), abs=1e-5)


def _params(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_linear_probe_leaves_the_model_bit_identical_and_is_the_authors_probe(encoder, tasks):
    """The authors' ``CLIPLinearProbe``: a linear layer with bias on the frozen tower's unnormalised image
    features, PyTorch's default initialisation, trained with cross-entropy."""
    enc = encoder()
    task = tasks[1]
    before = _params(enc.model)
    module = finetune(enc.model, task, "linear", epochs=2, batch_size=64, lr=1e-1, accelerator="cpu")
    after = _params(module.model)
    assert all(torch.equal(before[n], after[n]) for n in before)
    assert not any(p.requires_grad for p in module.model.parameters()) and module.head.weight.requires_grad
    images = task.eval_images[:5]
    with torch.no_grad():
        x = enc.model.encode_image(images)  # unnormalised, as the authors' probe reads it
        assert torch.allclose(module.logits(images), x @ module.head.weight.T + module.head.bias, atol=1e-5)
    assert module.head.weight.shape == (len(task.classes), enc.model.visual.output_dim)


def test_full_fine_tuning_is_cross_entropy_against_every_class_prompt(encoder, tasks):
    """The authors' ``clip`` method: logits = scale * image features @ class text features (all classes), cross-entropy
    against the label, gradients through both towers; not the in-batch contrastive loss (``flyp``)."""
    enc = encoder()
    task = tasks[0]  # object: 10 classes, 2 prompts each
    module = FineTune(enc.model, task.prompts, "full", task.name)
    images, labels = task.train_images[:6], task.train_labels[:6]
    x = torch.nn.functional.normalize(enc.model.encode_image(images), dim=-1)
    v, m, ctx = task.prompts.shape
    t = torch.nn.functional.normalize(enc.model.encode_text(task.prompts.reshape(v * m, ctx)), dim=-1).reshape(v, m, -1).mean(1)
    logits = enc.model.logit_scale.exp() * x @ torch.nn.functional.normalize(t, dim=-1).T
    assert torch.allclose(module.logits(images), logits, atol=1e-5)
    module.log = lambda *a, **k: None
    loss = module.training_step((images, labels), 0)
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-5)
    loss.backward()
    assert enc.model.token_embedding.weight.grad is not None and enc.model.visual.conv1.weight.grad is not None


def test_the_authors_optimizer_sgd_momentum_and_decay_on_every_trained_weight(encoder, tasks):
    enc = encoder()
    module = FineTune(enc.model, tasks[0].prompts, "full", "object", lr=0.01)
    opt = module.configure_optimizers()
    assert isinstance(opt, torch.optim.SGD) and len(opt.param_groups) == 1
    group = opt.param_groups[0]
    assert group["momentum"] == 0.9 and group["weight_decay"] == 1e-4 and group["lr"] == 0.01
    assert len(group["params"]) == len(list(enc.model.parameters()))  # logit scale, gains and biases decayed too, as theirs


def test_the_best_validation_epoch_is_kept_and_loaded_back(encoder, tasks):
    """The authors' ``train``: after each epoch a validation accuracy strictly above the best so far saves the
    model (ties keep the earlier epoch); the saved one is what the fine-tune returns."""
    enc = encoder()
    module = FineTune(enc.model, tasks[1].prompts, "linear", "colour")
    kept = None
    for epoch, acc in enumerate([0.5, 0.7, 0.7, 0.6]):
        with torch.no_grad():
            module.head.weight.fill_(epoch)
        n = 10
        module.val_correct = [torch.arange(n) < round(acc * n)]
        module.on_validation_epoch_end()
        if epoch == 1:
            kept = module.head.weight.detach().clone()
    assert module.val_accs == pytest.approx([0.5, 0.7, 0.7, 0.6]) and module.best_epoch == 1
    module.on_fit_end()
    assert torch.equal(module.head.weight, kept) and float(module.head.weight[0, 0]) == 1.0


def test_a_fine_tune_holds_out_a_tenth_of_its_training_images():
    from infogap.ablations.learn_forget.finetune import split_validation

    train, val = split_validation(2048, 0.1, seed=3)
    assert len(val) == 205 and len(train) == 1843 and not set(train) & set(val) and sorted([*train, *val]) == list(range(2048))
    again, val_again = split_validation(2048, 0.1, seed=3)
    assert np.array_equal(val, val_again) and not np.array_equal(val, split_validation(2048, 0.1, seed=4)[1])
    assert len(split_validation(5, 0.1, 0)[1]) == 1 and len(split_validation(2, 0.9, 0)[0]) == 1  # at least one of each
    assert len(split_validation(10, 0.0, 0)[1]) == 0
    with pytest.raises(ValueError, match="val_fraction"):
        split_validation(10, 1.0, 0)


@pytest.mark.slow
def test_bitfit_trains_only_block_biases_and_full_fine_tuning_trains_both_towers(encoder, tasks):
    task = tasks[1]
    for method in ("bitfit", "full"):
        enc = encoder()
        before = _params(enc.model)
        module = finetune(enc.model, task, method, epochs=1, batch_size=64, lr=1e-2, accelerator="cpu")
        after = _params(module.model)
        changed = {n for n in before if not torch.equal(before[n], after[n])}
        if method == "bitfit":  # the authors' ``bias``: the residual blocks' biases, not the pre/post/final norms'
            assert changed and all(".resblocks." in n and n.endswith("bias") for n in changed)
            assert any(n.startswith("visual.") for n in changed) and any(not n.startswith("visual.") for n in changed)
            assert "visual.ln_post.bias" not in changed and "ln_final.bias" not in changed
        else:
            assert "visual.conv1.weight" in changed and "token_embedding.weight" in changed and "logit_scale" in changed


@pytest.mark.slow
@pytest.mark.parametrize("method", ["full", "linear"])
def test_fine_tuning_on_a_task_raises_its_accuracy(encoder, tasks, method):
    """A random model is at chance on colour; a short fine-tune (either method) learns it. (SGD cannot move a
    random transformer's towers this far in 40 steps: the full fine-tune of a random model uses AdamW.)"""
    enc = encoder()
    task = tasks[1]
    zs = zero_shot(enc.model, task)["acc"]
    options = dict(optimizer="adamw", lr=3e-3, weight_decay=0.1) if method == "full" else dict(lr=3e-1)
    module = finetune(enc.model, task, method, epochs=10, batch_size=64, accelerator="cpu", **options)
    acc = module.accuracy(task)
    assert acc > zs + 0.2 and acc > 0.5, (zs, acc, module.val_accs)
    assert len(module.val_accs) == 10 and module.val_accs[module.best_epoch] == max(module.val_accs)
    assert accuracies(module, tasks) == pytest.approx({t.name: module.accuracy(t) for t in tasks}), "one image embedding, the same numbers"


def test_folder_task_splits_every_class_and_names_bad_folders(tmp_path, image_folder):
    enc = load_encoder(model="tiny-bpe")  # class prompts are sentences: a BPE model
    root = image_folder(tmp_path / "shapes", {"red_square": 4, "circle": 3})
    task = folder_task(enc, str(root), templates=["a {}.", "a photo of a {}."], eval_fraction=0.5, seed=1)
    assert task.name == "shapes" and task.classes == ["circle", "red square"]
    assert task.prompts.shape[:2] == (2, 2) and task.eval_images.shape[1:] == (3, 64, 64)
    assert sorted(task.eval_labels.tolist()) == [0, 0, 1, 1] and sorted(task.train_labels.tolist()) == [0, 1, 1]
    again = folder_task(enc, str(root), templates=["a {}.", "a photo of a {}."], eval_fraction=0.5, seed=1)
    assert torch.equal(again.eval_images, task.eval_images), "the split is fixed by the seed"
    with pytest.raises(FileNotFoundError, match="missing"):
        folder_task(enc, str(tmp_path / "missing"))
    (root / "empty").mkdir()
    with pytest.raises(ValueError, match="class 'empty' has no images"):
        folder_task(enc, str(root))
    (root / "empty").rmdir()
    image_folder(root, {"single": 1})
    with pytest.raises(ValueError, match="class 'single' has 1 image"):
        folder_task(enc, str(root))
    with pytest.raises(ValueError, match="templates need"):
        folder_task(enc, str(root), templates=["a photo"])


def test_a_task_needs_two_classes_and_matching_labels():
    images = torch.zeros(4, 3, 28, 28)
    with pytest.raises(ValueError, match="at least two classes"):
        Task("t", ["a"], torch.zeros(1, 1, 8, dtype=torch.long), images, torch.zeros(4), images, torch.zeros(4))
    with pytest.raises(ValueError, match="3 train images with 4 labels"):
        Task("t", ["a", "b"], torch.zeros(2, 1, 8, dtype=torch.long), images[:3], torch.zeros(4), images, torch.zeros(4))


def test_iimm_against_its_pairwise_definition(monkeypatch):
    """S_inter over every wrong class of every image, S_intra over every pair i < j, in several chunks."""
    from infogap.ablations.learn_forget.iimm import iimm, iimm_parts
    from infogap.train import metrics as M

    monkeypatch.setattr(M, "ROW_CHUNK", 10)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((37, 12))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    classes = rng.standard_normal((5, 12))
    classes /= np.linalg.norm(classes, axis=1, keepdims=True)
    lab = rng.integers(0, 5, 37)
    inter = np.mean([np.mean([x[i] @ classes[c] for c in range(5) if c != lab[i]]) for i in range(len(x))])
    n = len(x)
    intra = np.mean([x[i] @ x[j] for i in range(n) for j in range(i + 1, n)])
    assert iimm(x, classes, lab) == pytest.approx((inter + intra) / 2, abs=1e-9)
    assert iimm_parts(x, classes, lab) == pytest.approx((inter, intra), abs=1e-9)


def test_class_name_prompts_carry_no_word_of_another_factor(encoder):
    """The published protocol (FLYP): a task's prompts name its class and nothing else; a full caption
    with the other factors drawn at random would teach wrong attribute words."""
    from infogap.ablations.learn_forget.finetune import class_prompts
    from infogap.data.factors import FACTORS, Vocabulary

    enc = encoder()
    vocab = Vocabulary()
    for factor, values in FACTORS.items():
        prompts = class_prompts(enc, factor)
        assert prompts.shape[:2] == (len(values), 1)
        for c, value in enumerate(values):
            words = [t for t in prompts[c, 0].tolist() if t not in (vocab.pad_id, vocab.sot_id, vocab.eot_id)]
            assert words == [vocab.token(factor, c)], (factor, value)
        full = class_prompts(enc, factor, "full")  # the named option: captions naming every factor
        assert full.shape[1] == 8 and len(set(full[0].flatten().tolist()) - {vocab.pad_id, vocab.sot_id, vocab.eot_id}) > 1
    with pytest.raises(ValueError, match="word-level model reads only the factor words"):
        class_prompts(enc, "colour", "class", ("a photo of a {}",))


def test_out_of_domain_tasks_use_held_out_glyphs_and_are_never_fine_tuned(encoder):
    enc = encoder()
    tasks = synthetic_tasks(enc, ["object", "colour"], n_train=32, n_eval=32, ood=["object"])
    names = [t.name for t in tasks]
    assert names == ["object", "colour", "ood_object"] and [t.finetune for t in tasks] == [True, True, False]
    ood, own = tasks[2], tasks[0]
    assert torch.equal(ood.eval_labels, own.eval_labels) and not torch.allclose(ood.eval_images, own.eval_images)  # same samples, other glyphs
    with pytest.raises(ValueError, match="evaluation-only"):
        finetune(enc.model, ood, "linear", epochs=2)
    out = learn_forget({"object": 0.5, "colour": 0.6, "ood_object": 0.4}, {"object": 0.8, "colour": 0.5, "ood_object": 0.1}, "object",
                       out_of_domain=["ood_object"])
    assert out["forgetting"] == pytest.approx(0.1) and out["gain"] == pytest.approx(0.3)
    assert np.isnan(out["forgetting_ood"])  # ood_object is object itself on held-out glyphs: transfer, not forgetting
    # with another held-out task: only it counts (0.7 -> 0.5: forgetting 0.2; counting ood_object too would give 0.25)
    both = learn_forget({"object": 0.5, "colour": 0.6, "ood_object": 0.4, "ood_colour": 0.7},
                        {"object": 0.8, "colour": 0.5, "ood_object": 0.1, "ood_colour": 0.5}, "object", out_of_domain=["ood_object", "ood_colour"])
    assert both["forgetting_ood"] == pytest.approx(0.2) and both["forgetting"] == pytest.approx(0.1)


def test_each_task_draws_images_of_its_own_and_s_intra_differs_between_tasks(encoder):
    """``images="own"``: the object and the task's factor vary, every other attribute is held
    (``task_force``: plain morphology, a vivid colour of the task's own), so the tasks of one model have
    different image sets and different S_intra (the mean pairwise cosine of their training images'
    embeddings, by brute force here), and IIMM is the authors' (S_inter + S_intra) / 2 of its parts;
    ``shared``: one image set labelled by every factor."""
    import dataclasses

    from infogap.ablations.learn_forget.finetune import task_force
    from infogap.data.factors import FACTOR_NAMES

    # by hand: object (j = 0) holds every attribute, colour red; colour (j = 5) holds the morphology only
    assert task_force("object") == {"thickness": 0, "swelling": 0, "fracture": 0, "scaling": 0, "colour": 1}
    assert task_force("colour") == {"thickness": 0, "swelling": 0, "fracture": 0, "scaling": 0}
    assert task_force("thickness") == {"swelling": 0, "fracture": 0, "scaling": 0, "colour": 2}
    enc = encoder()
    tasks = synthetic_tasks(enc, ["object", "colour", "thickness"], n_train=64, n_eval=32)
    assert not torch.equal(tasks[0].train_images, tasks[1].train_images)
    for t in tasks:  # the held attributes are constant in the task's images, its own factor is not
        labels = dataclasses.replace(enc.source, force=task_force(t.name)).train_batch(0, np.arange(64))["labels"]
        assert torch.equal(torch.as_tensor(labels[t.name]), t.train_labels)
        assert all(len(np.unique(labels[g])) == 1 and labels[g][0] == v for g, v in task_force(t.name).items())
        assert len(np.unique(labels[t.name])) > 1 and len(np.unique(labels["object"])) > 1
        assert t.name in FACTOR_NAMES
    intra = []
    for t in tasks:
        x = torch.nn.functional.normalize(image_embeddings(enc.model, t.train_images).double(), dim=-1)
        sims = x @ x.T
        n = len(x)
        s_intra = float((sims.sum() - sims.diagonal().sum()) / (n * (n - 1)))
        zs = zero_shot(enc.model, t)
        assert zs["s_intra"] == pytest.approx(s_intra, rel=1e-5)
        assert zs["iimm"] == pytest.approx((zs["s_inter"] + zs["s_intra"]) / 2)
        intra.append(s_intra)
    assert max(intra) - min(intra) > 1e-4  # S_intra differs between the tasks of one model
    shared = synthetic_tasks(enc, ["object", "colour"], n_train=64, n_eval=32, images="shared")
    assert torch.equal(shared[0].train_images, shared[1].train_images)
    with pytest.raises(ValueError, match="own"):
        synthetic_tasks(enc, ["object"], images="mine")


@pytest.mark.parametrize("val_fraction", [0.1, 0.0])
def test_the_early_state_is_what_a_shorter_fine_tune_returns(encoder, tasks, val_fraction):
    """With SGD's constant rate the first epochs of a long fine-tune are a short one's, batch for batch: the state
    ``early_epochs`` keeps (its best validation epoch among them, or its last without a validation set) equals the
    state a separate run of that many epochs returns, tensor for tensor."""
    enc = encoder()
    import copy
    long = finetune(copy.deepcopy(enc.model), tasks[1], "bitfit", 4, batch_size=64, lr=0.05, seed=3, val_fraction=val_fraction,
                    accelerator="cpu", early_epochs=2)
    short = finetune(copy.deepcopy(enc.model), tasks[1], "bitfit", 2, batch_size=64, lr=0.05, seed=3, val_fraction=val_fraction,
                     accelerator="cpu")
    assert long.early is not None and long.early[0] == short.best_epoch
    if val_fraction:
        assert long.val_accs[:2] == short.val_accs
    shorter = short.trained_state()
    assert shorter.keys() == long.early[1].keys()
    assert all(torch.equal(long.early[1][k], shorter[k]) for k in shorter)
    assert len(long.val_accs) == (4 if val_fraction else 0) and (val_fraction or long.best_epoch == 3)  # the long run went on
    if not val_fraction:  # it keeps its last epoch, past the early one
        assert not all(torch.equal(long.trained_state()[k], shorter[k]) for k in shorter)


def test_early_epochs_is_refused_for_a_schedule_that_depends_on_the_run_length(encoder, tasks):
    with pytest.raises(ValueError, match="early_epochs needs the constant-rate sgd"):
        FineTune(encoder().model, tasks[1].prompts, "full", "colour", optimizer="adamw", early_epochs=2)


def test_only_the_measured_fine_tune_keeps_its_half_budget_state(encoder, tasks):
    """The measured fine-tune keeps the half-budget state ``half_budget_accuracy`` reads; the learning-rate search and
    the control, which never read it, keep none."""
    from infogap.ablations.learn_forget.study import Settings, run_finetune

    settings = Settings(epochs=2, batch_size=64)
    kept = run_finetune(encoder().model, tasks[1], "bitfit", settings, 0, keep_half=True)
    assert kept.early is not None and kept.early[0] == 0
    assert run_finetune(encoder().model, tasks[1], "bitfit", settings, 0).early is None
