"""Claim 1: fewer attributes in the captions (larger information imbalance) gives a larger modality gap
and a larger object bias; describing every factor (k = 5) shrinks both and raises attribute accuracy."""
from infogap.ablations.kit.claims import BEYOND, CONTROL, cite, compare, other_points
from infogap.ablations.kit.study import Study

# metric -> the sign of (value at the largest k) - (value at the smallest k) that the claim predicts, and
# the paper's statement it tests
EXPECT = {"rmg": "negative", "l2m": "negative", "moad_image": "negative", "moad_text": "negative", "entropy_i2t": "negative"}
SOURCE = {"rmg": "Schrodi et al. 2025, claim 1: less information in the captions gives a larger modality gap (RMG)",
          "l2m": "Schrodi et al. 2025, claim 1: less information in the captions gives a larger modality gap (L2M)",
          "moad_image": "Schrodi et al. 2025, claim 1: less information gives a larger object bias (MOAD, image side)",
          "moad_text": "Schrodi et al. 2025, claim 1: less information gives a larger object bias (MOAD, text side)",
          "entropy_i2t": "Schrodi et al. 2025: the gap goes with the entropy of the logits (higher where information is missing)"}
CONTROL_SOURCE = ("planted by construction: at the smallest k no caption names the attributes the largest k names, so attribute "
                  "accuracy must rise (the paper's 'describing every factor raises attribute accuracy')")


class Imbalance(Study):
    def claims(self, rows, design):
        """The smallest against the largest k of the design, paired by seed. The positive control is k
        itself: attribute accuracy rises from the smallest to the largest k (the captions of the largest k
        name the attributes, those of the smallest do not)."""
        lo, hi = min(design["k"]), max(design["k"])
        control = cite([compare(rows, "k", lo, hi, "attr_acc_mean", "positive")], CONTROL_SOURCE, CONTROL)
        return control + [c for metric, expect in EXPECT.items() for c in cite([compare(rows, "k", lo, hi, metric, expect)], SOURCE[metric])]

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
            out += cite([claim], "whether the accuracy an imbalanced model loses recovers with longer training (not in the paper)", BEYOND)
        return out
