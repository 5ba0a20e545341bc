"""The ablation runner: reads an ablation YAML (``spec``), loads its study (``study``: the ``Study``
contract), expands the runs, launches them (``local``, ``slurm``, ``sweeps`` for W&B), reuses finished
runs by identity (``identity``), shows progress (``progress``) and aggregates the finished runs into
``summary.csv``, ``report.md`` and figures (``aggregate``, with the statistics of ``claims``). It knows
no study: each is named in its YAML as ``module:Class``."""
