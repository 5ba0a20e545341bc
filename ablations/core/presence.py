"""Claim 2 (caption presence bias): whichever factor is always present in the caption becomes the one
the model is biased towards. MOAD_f = (object term) - (f term): negative when f dominates the object."""
from infogap.ablations.kit.claims import cite, compare
from infogap.ablations.kit.study import Study


class Presence(Study):
    def claims(self, rows, design):
        """For each factor made the always-present word: its MOAD term drops against object-always-present."""
        out = []
        for factor in [f for f in design["always_present"] if f != "object"]:
            claim = compare(rows, "always_present", "object", factor, f"moad_image_{factor}", "negative")
            claim.claim = f"moad_image_{factor} drops when {factor} is the always-present word (the bias moves to {factor})"
            out += cite([claim], "Schrodi et al. 2025, claim 2: the factor always present in the captions becomes the one the model is biased towards")
        return out
