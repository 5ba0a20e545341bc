"""Ablations: ``kit/`` (what a study imports: the ``Study`` contract, claims, run results), ``runner/``
(what drives studies, which knows none of them) and one folder per study, each holding its paper's
formulas, analyses, commands and its ``Study``: ``core/`` (Schrodi et al., the information imbalance),
``bias/`` (EAT), ``dense/`` (dense probes), ``learn_forget/`` (IIMM), ``heads/`` (TEXTSPAN, CCS)."""
