"""Dense probes (Vasu et al., arXiv 2405.08911; docs/results/dense.md): how much of a scene's layout do frozen image
features carry, and does caption information upstream make more of it? ``probe`` (the probes, their
metrics and baselines, the feature cache), ``datasets`` (local segmentation and depth layouts),
``mae`` (the masked-autoencoder baseline), ``study`` (``infogap ablate dense``), ``cli``
(``infogap probe``)."""
