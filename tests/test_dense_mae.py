"""The masked-autoencoder baseline (dense study, Vasu et al. 2024): patch order, the loss falls, only the image tower changes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from infogap.ablations.dense.mae import MaskedAutoencoder, train_mae
from infogap.ablations.dense.probe import patch_features
from infogap.data.synthetic import SyntheticDataModule
from infogap.train.embed import load_encoder


def test_patchify_follows_the_vit_token_order():
    mae = MaskedAutoencoder("tiny", text_spec=SyntheticDataModule().text_spec)
    images = torch.rand(2, 3, 28, 28)
    patches = mae.patchify(images)
    assert patches.shape == (2, 49, 48)
    assert torch.equal(patches[1, 8].view(4, 4, 3), images[1, :, 4:8, 4:8].permute(1, 2, 0))  # row 1, column 1


@pytest.mark.slow
def test_masked_autoencoder_learns_and_trains_only_the_image_tower(tmp_path):
    data = SyntheticDataModule(k=0, batch_size=32, train_size=2048, val_size=64)
    batch = data.source.val_batch(np.arange(64))["image"]
    torch.manual_seed(0)
    fresh = MaskedAutoencoder("tiny", text_spec=data.text_spec)
    with torch.no_grad():
        before, hidden = fresh(batch, torch.Generator().manual_seed(0))
    assert hidden.shape == (64, 49) and torch.all(hidden.sum(1) == 49 - 12)  # 75 % of 49 patches hidden
    initial = {n: p.clone() for n, p in fresh.model.state_dict().items()}
    ckpt = tmp_path / "mae.ckpt"
    mae = train_mae("tiny", data, steps=60, checkpoint=str(ckpt), seed=0, accelerator="cpu")
    with torch.no_grad():
        after, _ = mae.eval()(batch, torch.Generator().manual_seed(0))
    assert float(after) < 0.8 * float(before), (float(before), float(after))
    changed = {n for n, p in mae.model.state_dict().items() if not torch.equal(p, initial[n])}
    assert changed and all(n.startswith("visual.") for n in changed) and "visual.conv1.weight" in changed

    enc = load_encoder(checkpoint=str(ckpt))
    assert torch.equal(enc.model.visual.conv1.weight, mae.model.visual.conv1.weight)
    assert patch_features(enc.model, batch[:4]).shape == (4, 64, 7, 7)
