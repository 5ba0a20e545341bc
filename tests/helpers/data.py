"""Data the tests make: webdataset shards of scikit-image's bundled photographs, a tiny captioner."""
from __future__ import annotations

from pathlib import Path


PHOTOS = {  # scikit-image's bundled sample photographs (no download) and a caption for each
    "astronaut": "an astronaut in a spacesuit in front of a flag", "coffee": "a cup of coffee on a saucer",
    "chelsea": "a tabby cat looking to the side", "rocket": "a rocket on its launch pad",
    "cat": "a tabby cat", "hubble_deep_field": "galaxies in deep space", "colorwheel": "a colour wheel",
    "immunohistochemistry": "stained tissue under a microscope", "camera": "a man with a camera on a tripod",
    "coins": "old coins on a table", "moon": "the surface of the moon", "page": "a page of printed text",
}


def photo_image(name: str, size: int = 96):
    """A scikit-image sample photograph as an RGB PIL image of ``size`` x ``size``."""
    import numpy as np
    import skimage.data
    from PIL import Image

    a = getattr(skimage.data, name)()
    a = np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a[..., :3]
    return Image.fromarray(a.astype(np.uint8)).resize((size, size))


def write_photo_shards(directory: Path, n_shards: int = 2, per_shard: int = 6, corrupt: bool = True, prefix: str = "photos",
                       size: int = 96) -> list[Path]:
    """webdataset shards of scikit-image photographs as JPEG with a ``txt`` caption and a ``json``
    record (``label``); with ``corrupt``, the first shard also holds an undecodable image and a sample
    without a caption."""
    import io
    import json

    import webdataset as wds

    names = list(PHOTOS)
    paths = []
    for s in range(n_shards):
        path = Path(directory) / f"{prefix}-{s:06d}.tar"
        with wds.TarWriter(str(path)) as sink:
            for i in range(per_shard):
                name = names[(s * per_shard + i) % len(names)]
                buf = io.BytesIO()
                photo_image(name, size).save(buf, format="JPEG", quality=90)
                sink.write({"__key__": f"{prefix}{s}_{i:03d}_{name}", "jpg": buf.getvalue(), "txt": PHOTOS[name] + ".",
                            "json": json.dumps({"label": name}).encode()})
            if corrupt and s == 0:
                sink.write({"__key__": f"{prefix}{s}_corrupt", "jpg": b"\xff\xd8 truncated jpeg", "txt": "broken"})
                buf = io.BytesIO()
                photo_image("coins", size).save(buf, format="JPEG")
                sink.write({"__key__": f"{prefix}{s}_nocaption", "jpg": buf.getvalue()})
        paths.append(path)
    return paths


def make_tiny_captioner(path: Path) -> Path:
    """A randomly initialised transformers image-to-text model (ViT encoder, GPT-2 decoder, a word-level
    tokenizer, a ViT image processor) built from configs and saved with ``save_pretrained``: no download."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        GPT2Config,
        PreTrainedTokenizerFast,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
    )

    words = ["[PAD]", "[BOS]", "[EOS]", "[UNK]", "a", "photo", "of", "cat", "red", "small", "on", "the", "table", "with", "blue"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", bos_token="[BOS]", eos_token="[EOS]", unk_token="[UNK]")
    enc = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    dec = GPT2Config(vocab_size=len(words), n_positions=32, n_embd=32, n_layer=1, n_head=2, add_cross_attention=True,
                     is_decoder=True, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    model = VisionEncoderDecoderModel(VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec))
    model.config.decoder_start_token_id, model.config.pad_token_id, model.config.eos_token_id = 1, 0, 2
    gen = model.generation_config
    gen.decoder_start_token_id, gen.pad_token_id, gen.eos_token_id = 1, 0, 2
    gen.min_new_tokens, gen.suppress_tokens = 3, [0, 1, 3]  # a random model would emit only specials
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return Path(path)
