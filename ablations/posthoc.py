"""Claim 5: closing the gap post hoc (shifting one modality by the mean difference) does not by itself
improve accuracy. shift=text: y + (mean x - mean y); shift=image: x - (mean x - mean y); re-normalised."""
from infogap.ablations.analysis import rescore, shift

EXTRA_AXES = ["shift"]


def _shift(which):
    def transform(x, y, classes):
        delta = x.mean(0) - y.mean(0)
        if which == "text":
            return x, shift(y, delta), {f: shift(c, delta) for f, c in classes.items()}
        return shift(x, -delta), y, classes

    return transform


def rows(run, record):
    return [{"shift": which, **rescore(run.dir, None if which == "none" else _shift(which))} for which in ("none", "text", "image")]


def claims(rows):
    out = []
    for k in sorted({r["k"] for r in rows}):
        sel = {(r["seed"], r["shift"]): r for r in rows if r["k"] == k}
        seeds = sorted({s for s, _ in sel})
        closes = all(sel[(s, "text")]["l2m"] < 0.5 * sel[(s, "none")]["l2m"] for s in seeds)
        out.append((f"the text shift closes most of the gap (k={k})", closes,
                    "; ".join(f"seed {s}: L2M {sel[(s, 'none')]['l2m']:.3f} -> {sel[(s, 'text')]['l2m']:.3f}" for s in seeds)))
        gain = max(sel[(s, w)]["zeroshot_object_acc"] - sel[(s, "none")]["zeroshot_object_acc"] for s in seeds for w in ("text", "image"))
        out.append((f"no shift raises object accuracy by more than 1 point (k={k})", gain <= 0.01, f"largest change {gain:+.3f}"))
    return out
