"""Claim 1: fewer attributes in the captions (larger information imbalance) gives a larger modality gap
and a larger object bias; describing every factor (k = 5) shrinks both and raises attribute accuracy."""
from infogap.ablations.analysis import direction


def claims(rows):
    ks = sorted({r["k"] for r in rows})
    if len(ks) < 2:
        return []
    lo, hi = ks[0], ks[-1]
    return [
        direction(rows, "k", lo, hi, "rmg", smaller_at_hi=True),
        direction(rows, "k", lo, hi, "l2m", smaller_at_hi=True),
        direction(rows, "k", lo, hi, "moad_image", smaller_at_hi=True),
        direction(rows, "k", lo, hi, "moad_text", smaller_at_hi=True),
        direction(rows, "k", lo, hi, "attr_acc_mean", smaller_at_hi=False),
        direction(rows, "k", lo, hi, "entropy_i2t", smaller_at_hi=True),
    ]
