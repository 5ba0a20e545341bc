"""Training: the contrastive LightningModule, metrics, the evaluation callback and the ``infogap`` CLI."""
