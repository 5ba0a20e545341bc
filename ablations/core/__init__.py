"""The core study (Schrodi et al., "Two Effects, One Trigger", ICLR 2025): information imbalance between
images and captions drives the modality gap and the object bias. One module per claim: ``imbalance``
(claim 1), ``presence`` (2), ``gap_dims`` (3), ``temperature`` (4), ``posthoc`` (5), ``init_gap``
(claim 1, second half), and ``gap_performance`` (the reference's analysis across off-the-shelf models,
Kendall's tau between gap and performance)."""
