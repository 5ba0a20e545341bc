"""Claim 5: closing the gap post hoc (shifting one modality by the mean difference) does not by itself
improve accuracy. shift=text: y + (mean x - mean y); shift=image: x - (mean x - mean y); re-normalised."""
from infogap.ablations.core.rescore import rescore, shift
from infogap.ablations.runner.claims import paired_claim, per_seed
from infogap.ablations.runner.study import Study


def _shift(which):
    def transform(x, y, classes):
        delta = x.mean(0) - y.mean(0)
        if which == "text":
            return x, shift(y, delta), {f: shift(c, delta) for f, c in classes.items()}
        return shift(x, -delta), y, classes

    return transform


class Posthoc(Study):
    extra_axes = ("shift",)

    def rows(self, run, record):
        return [{"shift": which, **rescore(run.dir, None if which == "none" else _shift(which))} for which in ("none", "text", "image")]

    def claims(self, rows, design):
        """Per k of the design: the text shift leaves L2M below half of its value (L2M after - L2M before / 2
        < 0), and neither shift raises object accuracy by a point (the larger gain of the two, minus 0.01, < 0)."""
        out = []
        for k in design["k"]:
            none, text, image = (per_seed(rows, "shift", w, {"k": k}) for w in ("none", "text", "image"))
            seeds = sorted(set(none) & set(text) & set(image))
            out.append(paired_claim(f"the text shift closes most of the gap (k={k})",
                                    {s: text[s]["l2m"] - 0.5 * none[s]["l2m"] for s in seeds}, "negative",
                                    "; ".join(f"seed {s}: L2M {none[s]['l2m']:.3f} -> {text[s]['l2m']:.3f}" for s in seeds)))
            gains = {s: max(text[s]["zeroshot_object_acc"], image[s]["zeroshot_object_acc"]) - none[s]["zeroshot_object_acc"] for s in seeds}
            out.append(paired_claim(f"no shift raises object accuracy by more than 1 point (k={k})",
                                    {s: g - 0.01 for s, g in gains.items()}, "negative",
                                    "; ".join(f"seed {s}: largest change {g:+.3f}" for s, g in gains.items())))
        return out
