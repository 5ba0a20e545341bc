"""Attention heads (Madasu et al., EMNLP 2025, docs/results/heads.md; with TEXTSPAN of Gandelsman et al., ICLR 2024):
``textspan`` (TEXTSPAN and CCS), ``analysis`` (pools, contributions, head tables, pruning),
``study`` (``infogap ablate heads``), ``cli`` (``infogap analyze heads``). The head decomposition of an
open_clip ViT itself is model anatomy: ``infogap.models.decompose``."""
