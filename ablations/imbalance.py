"""Claim 1: fewer attributes in the captions (larger information imbalance) gives a larger modality gap
and a larger object bias; describing every factor (k = 5) shrinks both and raises attribute accuracy."""
from infogap.ablations.analysis import compare

# metric -> the sign of (value at the largest k) - (value at the smallest k) that the claim predicts
EXPECT = {"rmg": "negative", "l2m": "negative", "moad_image": "negative", "moad_text": "negative",
          "attr_acc_mean": "positive", "entropy_i2t": "negative"}


def claims(rows, design):
    """The smallest against the largest k of the design, paired by seed."""
    lo, hi = min(design["k"]), max(design["k"])
    return [compare(rows, "k", lo, hi, metric, expect) for metric, expect in EXPECT.items()]
