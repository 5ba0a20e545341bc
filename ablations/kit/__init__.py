"""What a study imports: the ``Study`` contract and the types its hooks receive (``study``: ``Study``,
``Run``, ``Ablation``, ``planned_steps``, ``settings_dict``, ``ROOT``), claims and their statistics
(``claims``) and what is read and written about finished runs (``results``: the per-run analysis cache,
a run's history, ``summary.csv``, figures). The runner, which drives studies, imports the kit too; the
kit imports neither (tests/test_layout.py)."""
