"""Learning and forgetting (Niss et al., arXiv 2407.15731; docs/results/learn_forget.md): does the zero-shot Inter-Intra
Modal Measure predict what fine-tuning gains on a task and forgets elsewhere? ``iimm`` (the measure),
``finetune`` (tasks, zero-shot measures, FLYP / linear probe / BitFit), ``study``
(``infogap ablate learn_forget``: fits and claims), ``cli`` (``infogap analyze learn-forget``)."""
