"""Intrinsic bias (Ghate et al., NAACL 2025; docs/results/bias.md): embedding association tests. ``eat`` (the
effect size and permutation p), ``analyze`` (test sets, embedding them, ``infogap analyze eat``),
``study`` (``infogap ablate bias``: planted co-occurrences, mixed-model fits, claims)."""
