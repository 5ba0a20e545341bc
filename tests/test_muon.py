"""The default synthetic recipe's optimizer: Muon for the transformer blocks' matrices, AdamW for the rest
(``infogap.train.module.MuonWithAdamW``), against a plain implementation of Muon's published update."""
from __future__ import annotations

import copy
import math

import pytest
import torch

from infogap.data.synthetic import SyntheticDataModule
from infogap.train.module import ContrastiveModule, MuonWithAdamW, no_weight_decay

# tiny: 2 vision + 2 text blocks, each with 4 matrices (attention in/out, MLP in/out)
HIDDEN = {f"{tower}transformer.resblocks.{i}.{m}" for tower in ("visual.", "") for i in (0, 1)
          for m in ("attn.in_proj_weight", "attn.out_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")}


def _module(**kw) -> tuple[ContrastiveModule, SyntheticDataModule]:
    data = SyntheticDataModule(k=2, batch_size=16, train_size=64, val_size=32)
    torch.manual_seed(0)
    return ContrastiveModule("tiny", text_spec=data.text_spec, optimizer="muon", **kw), data


def _optimizer(module: ContrastiveModule, lr: float = 1e-3, muon_lr=0.02, weight_decay: float = 0.1) -> MuonWithAdamW:
    decay = [p for n, p in module.model.named_parameters() if not no_weight_decay(n, p)]
    rest = [p for n, p in module.model.named_parameters() if no_weight_decay(n, p)]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return MuonWithAdamW(module.model.named_parameters(), groups, lr=lr, weight_decay=weight_decay, muon_lr=muon_lr,
                         adamw=dict(betas=(0.9, 0.98), eps=1e-6))


def _backward(module, batch) -> None:
    out = module(batch["image"], batch["text"])
    module.contrastive_loss(out, module.loss_fn).backward()


def _batch(data):
    data.setup("fit")
    return next(iter(data.train_dataloader()))


def test_muon_takes_exactly_the_sixteen_block_matrices_and_adamw_the_rest():
    module, _ = _module()
    opt = _optimizer(module)
    names = {id(p): n for n, p in module.model.named_parameters()}
    muon = {names[id(p)] for g in opt.muon.param_groups for p in g["params"]}
    adamw = {names[id(p)] for g in opt.adamw.param_groups for p in g["params"]}
    assert muon == HIDDEN
    assert adamw == set(names.values()) - HIDDEN
    assert {"token_embedding.weight", "visual.conv1.weight", "visual.proj", "text_projection", "logit_scale"} <= adamw
    assert sum(len(g["params"]) for g in opt.param_groups) == len(names)  # the scheduler sees every parameter once


def _newton_schulz(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Keller Jordan's quintic Newton-Schulz orthogonalisation, written out (float64)."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.double()
    tall = x.shape[0] > x.shape[1]
    x = x.T if tall else x
    x = x / x.norm()
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


def test_first_step_of_a_block_matrix_is_muons_published_update():
    """Step 1 from zero momentum (0.95, Nesterov): update = NS5(g), scaled by sqrt(max(1, fan_out/fan_in))
    at muon_lr (Keller's scaling), after decoupled weight decay p <- p (1 - lr wd). The reference runs in
    float64; torch's Newton-Schulz runs in bfloat16, so the steps are compared by direction (cosine) and
    size (norm) within 2 % (the scalings in question differ by 60 %: 0.2 sqrt(192) = 2.77 against
    sqrt(3) = 1.73; a step of the wrong matrix or without momentum's Nesterov term points elsewhere)."""
    module, data = _module()
    batch = _batch(data)
    opt = _optimizer(module, muon_lr=0.02, weight_decay=0.1)
    name = "visual.transformer.resblocks.0.attn.in_proj_weight"  # 192 x 64
    p = dict(module.model.named_parameters())[name]
    before = p.detach().clone()
    _backward(module, batch)
    g = p.grad.detach().clone()
    opt.step()
    momentum = 0.95
    buf = (1 - momentum) * g  # lerp from zero
    nesterov = g + momentum * (buf - g)  # g.lerp(buf, momentum)
    expected = before * (1 - 0.02 * 0.1) - 0.02 * math.sqrt(192 / 64) * _newton_schulz(nesterov).float()
    step, want = (p.detach() - before).flatten().double(), (expected - before).flatten().double()
    assert torch.nn.functional.cosine_similarity(step, want, dim=0) > 0.98
    assert step.norm() / want.norm() == pytest.approx(1.0, abs=0.02)


def test_two_steps_equal_muon_and_adamw_run_side_by_side():
    """torch's documented pattern (two optimizers, each stepped) is the reference: every parameter equal."""
    module, data = _module()
    batch = _batch(data)
    reference = copy.deepcopy(module)
    opt = _optimizer(module, lr=1e-3)
    rest = [(n, p) for n, p in reference.model.named_parameters() if n not in HIDDEN]
    adamw = torch.optim.AdamW([{"params": [p for n, p in rest if not no_weight_decay(n, p)], "weight_decay": 0.1},
                               {"params": [p for n, p in rest if no_weight_decay(n, p)], "weight_decay": 0.0}],
                              lr=1e-3, betas=(0.9, 0.98), eps=1e-6)
    muon = torch.optim.Muon([p for n, p in reference.model.named_parameters() if n in HIDDEN], lr=0.02, weight_decay=0.1)
    for _ in range(2):
        opt.zero_grad()
        adamw.zero_grad()
        muon.zero_grad()
        _backward(module, batch)
        _backward(reference, batch)
        opt.step()
        adamw.step()
        muon.step()
    got = dict(module.model.named_parameters())
    for n, p in reference.model.named_parameters():
        torch.testing.assert_close(got[n], p, atol=1e-7, rtol=0, msg=lambda m: f"{n}: {m}")


def test_a_scheduler_scales_both_optimizers_and_the_state_round_trips():
    module, data = _module()
    batch = _batch(data)
    opt = _optimizer(module, lr=1e-3, muon_lr=0.02)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 ** step)
    _backward(module, batch)
    opt.step()
    sched.step()
    assert [g["lr"] for g in opt.muon.param_groups] == [0.01]
    assert [g["lr"] for g in opt.adamw.param_groups] == [5e-4, 5e-4]
    assert {id(p) for p in opt.state} == {id(p) for g in opt.param_groups for p in g["params"]}
    # save after one step, load into a fresh optimizer: its next step equals the original's
    twin = copy.deepcopy(module)
    twin_opt = _optimizer(twin)
    twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    for m, o in ((module, opt), (twin, twin_opt)):
        o.zero_grad()
        _backward(m, batch)
        o.step()
    for (n, a), b in zip(module.model.named_parameters(), twin.model.parameters()):
        torch.testing.assert_close(b, a, atol=0, rtol=0, msg=lambda m: f"{n}: {m}")


def test_muon_settings_are_checked():
    data = SyntheticDataModule(k=0, batch_size=16, train_size=64, val_size=32)
    linear = torch.nn.Linear(4, 4)  # no transformer block: nothing for Muon
    with pytest.raises(ValueError, match="no 2-D weight inside a transformer block"):
        MuonWithAdamW(linear.named_parameters(), [{"params": list(linear.parameters())}], lr=1e-3, weight_decay=0.1, muon_lr=None, adamw={})
    with pytest.raises(ValueError, match="model.optimizer must be adamw or muon"):
        ContrastiveModule("tiny", optimizer="sgd", text_spec=data.text_spec)
    with pytest.raises(ValueError, match="model.muon_lr=0.02 needs model.optimizer=muon"):
        ContrastiveModule("tiny", optimizer="adamw", muon_lr=0.02, text_spec=data.text_spec)


def test_the_default_recipe_is_muon_and_the_legacy_config_restores_the_adamw_recipe(capsys, monkeypatch):
    """What `infogap fit` trains with, as the CLI parses it (``--print_config``, in this process):
    configs/synthetic.yaml alone, and with configs/recipes/legacy-600.yaml over it (the recipe of earlier
    releases, with its published numbers)."""
    import sys

    import yaml

    from infogap.cli import main as infogap
    from tests.helpers import ROOT

    def parsed(*configs: str) -> dict:
        monkeypatch.setattr(sys, "argv", ["infogap"])
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            infogap(["fit", *[a for c in configs for a in ("--config", str(ROOT / c))], "--print_config"])
        assert exc.value.code in (0, None)
        return yaml.safe_load(capsys.readouterr().out)

    default = parsed("configs/synthetic.yaml")
    assert {k: default["model"][k] for k in ("model", "optimizer", "muon_lr", "lr", "weight_decay", "warmup_steps")} == \
        {"model": "tiny", "optimizer": "muon", "muon_lr": 0.02, "lr": 0.0005, "weight_decay": 0.1, "warmup_steps": 20}
    assert default["trainer"]["max_steps"] == 600 and default["data"]["init_args"]["batch_size"] == 128
    legacy = parsed("configs/synthetic.yaml", "configs/recipes/legacy-600.yaml")
    assert {k: legacy["model"][k] for k in ("model", "optimizer", "muon_lr", "lr", "weight_decay", "warmup_steps", "betas", "eps",
                                            "init_temperature")} == \
        {"model": "tiny", "optimizer": "adamw", "muon_lr": None, "lr": 0.002, "weight_decay": 0.1, "warmup_steps": 50,
         "betas": [0.9, 0.98], "eps": 1e-6, "init_temperature": 0.07}
    assert legacy["trainer"]["max_steps"] == 600 and legacy["data"]["init_args"]["batch_size"] == 128
