"""Build open_clip ``CLIP`` models from named configs.

Small configs (``tiny``, ``small``) are for the 28x28 synthetic images with a word-level text tower
(``tiny-bpe`` is a CPU-sized model for real images with open_clip's BPE tokenizer):
the vision tower is an open_clip ViT, the text tower an open_clip text transformer over the data's
word vocabulary (one token per factor value), pooled at the end-of-text token. Any other name is a
stock open_clip model (``RN50``, ``ViT-B-16``, ...), built with ``open_clip.create_model``; weights
come only from a local file, never from a hub.
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import open_clip
import torch
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg


@dataclass(frozen=True)
class SmallClipConfig:
    """A small CLIP: plain data, turned into open_clip's own vision and text configs."""

    embed_dim: int
    vision: dict = field(default_factory=dict)
    text: dict = field(default_factory=dict)

    def with_vision(self, **changes) -> "SmallClipConfig":
        """This config with some of its image tower's settings changed (the text tower the same)."""
        return SmallClipConfig(self.embed_dim, {**self.vision, **changes}, dict(self.text))


SMALL_CONFIGS: dict[str, SmallClipConfig] = {
    "tiny": SmallClipConfig(
        embed_dim=64,
        vision=dict(image_size=28, patch_size=4, width=64, layers=2, head_width=32, mlp_ratio=2.0),
        text=dict(width=64, heads=2, layers=2, mlp_ratio=2.0),
    ),
    "small": SmallClipConfig(
        embed_dim=128,
        vision=dict(image_size=28, patch_size=4, width=128, layers=4, head_width=32, mlp_ratio=4.0),
        text=dict(width=128, heads=4, layers=4, mlp_ratio=4.0),
    ),
    # A CPU-sized model for real images: 64-px ViT and a small text tower over open_clip's BPE vocabulary.
    "tiny-bpe": SmallClipConfig(
        embed_dim=64,
        vision=dict(image_size=64, patch_size=8, width=64, layers=2, head_width=32, mlp_ratio=2.0),
        text=dict(width=64, heads=2, layers=2, mlp_ratio=2.0, vocab_size=49408, context_length=77),
    ),
}
SMALL_CONFIGS.update({
    # `tiny` with 2-px patches (196 image tokens, not 49): the resolution lever of the time-to-target benchmark
    "tiny-p2": SMALL_CONFIGS["tiny"].with_vision(patch_size=2),
    # `small` with 8 heads per layer (32 in all, 16 in the last two layers): the attention-head study.
    "small-h8": SMALL_CONFIGS["small"].with_vision(head_width=16),
    # `small-h8` with 6 layers: 48 heads, every layer analysed (the attention-head study: sets of 8 heads per concept).
    "small-h8-l6": SMALL_CONFIGS["small"].with_vision(head_width=16, layers=6),
    # `tiny` for the layout world's 64-px scenes: 8-px patches, 8 x 8 tokens (the dense-feature study).
    "tiny-64p8": SMALL_CONFIGS["tiny"].with_vision(image_size=64, patch_size=8),
    # `small` for the layout world's 64-px scenes (the dense study's GPU plan): 8-px patches, 8 x 8 tokens.
    "small-64p8": SMALL_CONFIGS["small"].with_vision(image_size=64, patch_size=8),
})


def is_word_level(name: str) -> bool:
    """A small config whose text tower reads the synthetic data's word vocabulary (not BPE)."""
    return name in SMALL_CONFIGS and "vocab_size" not in SMALL_CONFIGS[name].text


def model_names() -> list[str]:
    """Every name ``build_model`` accepts: the small configs, then open_clip's stock models."""
    return sorted(SMALL_CONFIGS) + open_clip.list_models()


def build_model(
    name: str,
    *,
    vocab_size: Optional[int] = None,
    context_length: Optional[int] = None,
    eos_id: Optional[int] = None,
    pad_id: int = 0,
    init_logit_scale: float = math.log(1 / 0.07),
    init_logit_bias: Optional[float] = None,
    pretrained: Optional[str] = None,
) -> CLIP:
    """Build a CLIP model with ``output_dict=True``.

    For the small configs ``vocab_size``, ``context_length`` and ``eos_id`` describe the word-level
    tokenizer of the data (``infogap.data.synthetic.Vocabulary``). ``pretrained`` is a local checkpoint path;
    None or ``none`` (what the commands' ``--pretrained none`` passes) is a random initialisation.
    """
    if isinstance(pretrained, str) and pretrained.strip().lower() == "none":
        pretrained = None
    if name in SMALL_CONFIGS:
        cfg = SMALL_CONFIGS[name]
        vision_cfg = CLIPVisionCfg(**cfg.vision)
        if "vocab_size" in cfg.text:  # BPE text tower: open_clip's tokenizer, pooled at EOT (the largest id)
            text_cfg = CLIPTextCfg(**cfg.text)
        else:
            missing = [k for k, v in dict(vocab_size=vocab_size, context_length=context_length, eos_id=eos_id).items() if v is None]
            if missing:
                raise ValueError(f"model {name!r} is a word-level model and needs {', '.join(missing)} from the data's word vocabulary, "
                                 "which BPE-tokenised data (real shards, data.tokenizer=<open_clip name>) does not have: "
                                 "use a BPE model (tiny-bpe, RN50, ViT-B-16, ...)")
            text_cfg = CLIPTextCfg(context_length=context_length, vocab_size=vocab_size, pad_id=pad_id, eos_id=eos_id, pool_type="eos", **cfg.text)
        model = CLIP(
            cfg.embed_dim,
            vision_cfg,
            text_cfg,
            init_logit_scale=init_logit_scale,
            init_logit_bias=init_logit_bias,
            output_dict=True,
        )
    elif name in open_clip.list_models():
        model = open_clip.create_model(
            name,
            pretrained=None,
            init_logit_scale=init_logit_scale,
            init_logit_bias=init_logit_bias,
            output_dict=True,
        )
    else:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(sorted(SMALL_CONFIGS))} or an open_clip name such as RN50, ViT-B-16")
    if pretrained:
        load_checkpoint(model, pretrained)
    return model


def is_deepspeed_checkpoint(path: str | Path) -> bool:
    """A DeepSpeed checkpoint is a directory (Lightning names it like a file, ``last.ckpt/``) holding a
    ``latest`` file and the per-rank ZeRO shards."""
    return Path(path).is_dir() and (Path(path) / "latest").is_file()


def read_checkpoint(path: str | Path) -> dict:
    """A checkpoint as a dict with ``state_dict``: a file (open_clip, plain state dict, Lightning), or a
    DeepSpeed ZeRO directory consolidated into one fp32 state dict (DeepSpeed's zero_to_fp32)."""
    path = Path(path)
    if is_deepspeed_checkpoint(path):
        from pytorch_lightning.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict

        with tempfile.TemporaryDirectory() as tmp:
            return convert_zero_checkpoint_to_fp32_state_dict(path, Path(tmp) / "consolidated.ckpt")
    if path.is_dir():
        raise FileNotFoundError(f"checkpoint {path} is a directory without a DeepSpeed 'latest' file")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"checkpoint {path}: the file is empty")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, EOFError, UnpicklingError, ... for a bad file
        raise ValueError(f"checkpoint {path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:150]})") from None
    if isinstance(state, dict) and "state_dict" in state:
        return state
    if isinstance(state, dict) and state and all(torch.is_tensor(v) for v in state.values()):
        return {"state_dict": state}  # a plain state dict (open_clip's own files)
    raise ValueError(f"checkpoint {path}: holds a {type(state).__name__}, not model weights (a state dict, or a dict with 'state_dict')")


def model_state_dict(checkpoint: dict) -> dict:
    """The CLIP model's own keys: without Lightning's ``model.`` or DDP's ``module.`` prefix."""
    state = checkpoint["state_dict"]
    for prefix in ("_forward_module.", "model.", "module."):
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def load_checkpoint(model: torch.nn.Module, path: str | Path, strict: bool = True) -> Any:
    """Load weights from a local checkpoint (any that ``read_checkpoint`` reads) into ``model``; weights
    of another architecture are a one-line error naming the file and the first mismatch."""
    state = model_state_dict(read_checkpoint(path))
    try:
        return model.load_state_dict(state, strict=strict)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = next((line for line in lines[1:] if line), lines[0] if lines else "")
        raise ValueError(f"checkpoint {path}: its weights do not fit this model ({detail[:200]})") from None
