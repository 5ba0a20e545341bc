"""Claim 2 (caption presence bias): whichever factor is always present in the caption becomes the one
the model is biased towards. MOAD_f = (object term) - (f term): negative when f dominates the object."""
from infogap.ablations.analysis import per_seed


def claims(rows):
    out = []
    base = per_seed(rows, "always_present", "object")
    for factor in ("colour", "thickness", "scaling"):
        moved = per_seed(rows, "always_present", factor)
        seeds = sorted(set(base) & set(moved))
        if not seeds:
            continue
        key = f"moad_image_{factor}"
        ok = all(moved[s][key] < base[s][key] for s in seeds)
        detail = "; ".join(f"seed {s}: {base[s][key]:.3f} (object always present) -> {moved[s][key]:.3f} ({factor} always present)" for s in seeds)
        out.append((f"{key} drops when {factor} is the always-present word (the bias moves to {factor})", ok, detail))
    return out
