"""The ablation runner, which drives studies and knows none: reads an ablation YAML and loads its study
with its settings (``spec``), expands the runs and their commands (``expand``), launches them
(``local``, ``slurm``, ``sweeps`` for W&B), reuses finished runs by identity (``identity``), shows
progress (``progress``), aggregates the finished runs into ``summary.csv``, ``report.md`` and figures
(``aggregate``), renders reports and the docs' tables (``report``), and runs whole plans
(``reproduce``); ``cli`` is ``infogap ablate``. What studies share with it lives in
``infogap.ablations.kit``. Each study is named in its YAML as ``module:Class``."""
