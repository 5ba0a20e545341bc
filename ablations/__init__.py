"""Ablations: ``runner/`` (the framework, which knows no study) and one folder per study, each holding
its paper's formulas, analyses, commands and its ``Study``: ``core/`` (Schrodi et al., the information
imbalance), ``bias/`` (EAT), ``dense/`` (dense probes), ``learn_forget/`` (IIMM), ``heads/`` (TEXTSPAN, CCS)."""
