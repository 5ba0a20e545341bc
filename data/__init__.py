"""Data: synthetic images with controlled caption information (and, later, real image-text shards)."""
from infogap.data.factors import ATTRIBUTE_FACTORS, FACTOR_NAMES, FACTORS, OBJECT, Vocabulary
from infogap.data.synthetic import SyntheticDataModule

__all__ = ["ATTRIBUTE_FACTORS", "FACTOR_NAMES", "FACTORS", "OBJECT", "SyntheticDataModule", "Vocabulary"]
