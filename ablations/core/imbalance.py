"""Claim 1: fewer attributes in the captions (larger information imbalance) gives a larger modality gap
and a larger object bias; describing every factor (k = 5) shrinks both and raises attribute accuracy."""
from infogap.ablations.kit.claims import compare, other_points
from infogap.ablations.kit.study import Study

# metric -> the sign of (value at the largest k) - (value at the smallest k) that the claim predicts
EXPECT = {"rmg": "negative", "l2m": "negative", "moad_image": "negative", "moad_text": "negative",
          "attr_acc_mean": "positive", "entropy_i2t": "negative"}


class Imbalance(Study):
    def claims(self, rows, design):
        """The smallest against the largest k of the design, paired by seed."""
        lo, hi = min(design["k"]), max(design["k"])
        return [compare(rows, "k", lo, hi, metric, expect) for metric, expect in EXPECT.items()]

    def sweep_claims(self, rows, design):
        """With a training-length axis (``--sweep trainer.max_steps=600,2400,9600``): at the smallest and the
        largest k, does object accuracy rise from the shortest to the longest training (does it recover
        with training)?"""
        if len(design.get("max_steps", [])) < 2:
            return []
        short, long = min(design["max_steps"]), max(design["max_steps"])
        ends = {min(design["k"]), max(design["k"])}
        out = []
        for where in (w for w in other_points(design, "max_steps") if w["k"] in ends):
            claim = compare(rows, "max_steps", short, long, "zeroshot_object_acc", "positive", where)
            claim.claim = f"object accuracy at k={where['k']} rises from {short} to {long} training steps"
            out.append(claim)
        return out
