"""Model builders: small open_clip CLIP models for the synthetic data, stock open_clip models for real data."""
from infogap.models.clip import SMALL_CONFIGS, build_model, is_word_level, load_checkpoint, model_names

__all__ = ["SMALL_CONFIGS", "build_model", "is_word_level", "load_checkpoint", "model_names"]
