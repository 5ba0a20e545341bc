"""``infogap embed``: image and text embeddings of any local open_clip checkpoint on local webdataset
shards, written in the ``.npz`` format of the metrics callback (``infogap metrics`` and
``infogap analyze gap-performance`` read it).

    infogap embed --model ViT-B-16 --pretrained /models/vit_b16_laion400m.pt \\
        --shards '/data/cc3m/val-{000000..000003}.tar' --out emb/vit_b16_laion400m.npz --group laion400m

The shards are read as the validation split (ordered, full captions, open_clip's eval transform and
tokenizer for ``--model``); the first ``--n`` good samples are embedded. ``--group`` names the
model's training data, for the within-data comparisons of ``analyze gap-performance``.

``load_encoder`` gives the analyses one way to load and embed a model: an infogap run's checkpoint or
any open_clip model with a local checkpoint, with its preprocessing, its tokenizer and a synthetic
source that renders concepts with that tokenizer (``Encoder``).
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

BATCH = 256


@torch.no_grad()
def encode(fn: Callable, x: torch.Tensor, device=None) -> torch.Tensor:
    """``fn(batch, normalize=True)`` (a model's ``encode_image`` or ``encode_text``) over ``x`` in batches of
    ``BATCH``, each moved to ``device`` (None: where it is); unit float32 embeddings on the CPU."""
    return torch.cat([fn(x[i: i + BATCH] if device is None else x[i: i + BATCH].to(device), normalize=True).float().cpu()
                      for i in range(0, len(x), BATCH)])


def embed(model_name: str, pretrained: str | None, shards: str, n: int, batch_size: int = 256, device: str = "auto") -> dict:
    """{image, text (unit-norm float32, row i of text matches image i), logit_scale} of ``n`` samples."""
    from infogap.data.webdata import WebDataModule
    from infogap.models import build_model

    try:
        data = WebDataModule(train_shards=shards, val_shards=shards, model=model_name, batch_size=batch_size, num_workers=0)
        count = data.eval_size(n)
    except (ValueError, FileNotFoundError) as exc:  # the data module names its config fields; this command's flag is --shards
        message = re.sub(r"data\.(train|val)_shards", "--shards", str(exc))
        raise type(exc)(message) from None
    if count < 2:
        raise ValueError(f"--shards {shards}: {count} readable sample(s); the metrics need at least 2")
    samples = data.eval_samples(np.arange(count))
    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    model = build_model(model_name, pretrained=pretrained).to(device).eval()
    with torch.no_grad():
        image = torch.cat([model.encode_image(samples["image"][i: i + batch_size].to(device), normalize=True).float().cpu()
                           for i in range(0, count, batch_size)])
        text = torch.cat([model.encode_text(samples["text_full"][i: i + batch_size].to(device), normalize=True).float().cpu()
                          for i in range(0, count, batch_size)])
        scale = float(model.logit_scale.detach().exp())
    return {"image": image.numpy(), "text": text.numpy(), "logit_scale": scale}


@dataclass
class Encoder:
    """A CLIP model with what it takes to embed a set: its image preprocessing (PIL -> tensor), its
    tokenizer, and a synthetic-data source that renders concepts with the model's tokenizer."""

    model: torch.nn.Module
    name: str
    word_level: bool
    preprocess: Callable
    tokenize: Callable[[list[str]], torch.Tensor]
    source: object  # infogap.data.synthetic.SyntheticSource

    def images(self, images: torch.Tensor) -> np.ndarray:
        return encode(self.model.encode_image, images).numpy()

    def texts(self, tokens: torch.Tensor) -> np.ndarray:
        return encode(self.model.encode_text, tokens).numpy()

    def folder_images(self, folder: str, where: str) -> torch.Tensor:
        """Every image under ``folder`` (recursively, sorted), preprocessed for this model; a missing or
        empty folder or an unreadable image is a one-line error starting with ``where``."""
        from PIL import Image

        tensors = []
        for f in image_files(folder, where):
            try:
                with Image.open(f) as im:
                    tensors.append(self.preprocess(im.convert("RGB")))
            except Exception as e:  # PIL raises several kinds for a corrupt or unsupported file
                raise ValueError(f"{where}: cannot read image {f}: {type(e).__name__}: {e}") from None
        return torch.stack(tensors)

    def rendered(self, images: torch.Tensor) -> torch.Tensor:
        """Rendered synthetic images ([0, 1], 28 px, or 64 px in the layout world) as this model takes them: as they are for the
        word-level models trained on them, through the model's preprocessing for any other."""
        if self.word_level:
            return images
        from torchvision.transforms.functional import to_pil_image

        return torch.stack([self.preprocess(to_pil_image(im)) for im in images])


def image_files(folder: str, where: str) -> list[Path]:
    """The image files under ``folder`` (recursively, sorted); one-line errors naming ``where``."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{where}: no such image folder: {folder}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
    if not files:
        raise ValueError(f"{where}: the folder {folder} has no images ({', '.join(IMG_EXTENSIONS)})")
    return files


def load_encoder(checkpoint: Optional[str] = None, model: Optional[str] = None, pretrained: Optional[str] = None, seed: int = 0) -> Encoder:
    """An infogap run's checkpoint (its model name and word vocabulary come from the checkpoint's
    hyper-parameters) or an open_clip model name with an optional local checkpoint."""
    import open_clip

    from infogap.data.synthetic import SyntheticSource
    from infogap.data.webdata import transforms_for
    from infogap.models import build_model
    from infogap.models.clip import is_word_level, read_checkpoint

    text_spec, data_hp = {}, {}
    if checkpoint:
        state = read_checkpoint(checkpoint)
        hp, data_hp = state.get("hyper_parameters") or {}, state.get("datamodule_hyper_parameters") or {}
        if "model" not in hp:
            raise ValueError(f"--checkpoint {checkpoint}: no infogap hyper-parameters in it (for another checkpoint use --model NAME --pretrained PATH)")
        model, pretrained, text_spec = hp["model"], checkpoint, dict(hp.get("text_spec") or {})
    if not model:
        raise ValueError("give --checkpoint CKPT (an infogap run) or --model NAME [--pretrained PATH]")
    word = is_word_level(model)
    if word and not text_spec:
        raise ValueError(f"--model {model} is a word-level model: load it from its run with --checkpoint (it holds the word vocabulary)")
    net = build_model(model, **text_spec, pretrained=pretrained).eval()
    if word:
        from torchvision import transforms

        from infogap.data.factors import Vocabulary

        # the world is the text tower's vocabulary: the layout world's has the layout words (a checkpoint
        # with its data module's settings, a run's, also says whether its captions named them)
        layout = text_spec == Vocabulary(layout=True).text_spec()
        source = SyntheticSource(seed=seed, layout=layout, layout_words=bool(data_hp.get("layout_words", True)))
        preprocess = transforms.Compose([transforms.Resize((source.image_size, source.image_size)), transforms.ToTensor()])
        tokenize = lambda texts: torch.from_numpy(np.stack([source.vocab.encode(t) for t in texts]))  # noqa: E731
    else:
        _, _, preprocess, tokenizer = transforms_for(model)
        source = SyntheticSource(seed=seed, tokenizer=open_clip.get_tokenizer(model) if model in open_clip.list_models() else tokenizer)
        tokenize = tokenizer
    return Encoder(net, model, word, preprocess, tokenize, source)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="infogap embed", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="open_clip model name (RN50, ViT-B-16, ...) or tiny-bpe")
    p.add_argument("--pretrained", default=None, help="local checkpoint (open_clip, state dict, infogap/Lightning, DeepSpeed); "
                                                      "none (or left out): random initialisation")
    p.add_argument("--shards", required=True, help="webdataset shards, brace notation")
    p.add_argument("--out", required=True, help="the .npz to write")
    p.add_argument("--n", type=int, default=10_000, help="samples to embed (the first N of the shards; default 10000)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--group", default="", help="the model's training data (e.g. laion400m): models sharing it form a group")
    p.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda, ...")
    args = p.parse_args(argv)
    out = Path(args.out)
    if out.suffix != ".npz":
        raise ValueError(f"--out {out}: the file name must end in .npz")
    if args.n < 2 or args.batch_size < 1:
        raise ValueError(f"--n must be >= 2 and --batch-size >= 1, got {args.n} and {args.batch_size}")
    blocker = next((d for d in (out.parent, *out.parent.parents) if d.exists() and not d.is_dir()), None)
    if blocker is not None or out.is_dir():  # before the model is loaded and the shards embedded
        raise ValueError(f"--out {out}: {blocker or out} is {'a file' if blocker else 'a directory'}; give the path of an .npz file")
    result = embed(args.model, args.pretrained, args.shards, args.n, args.batch_size, args.device)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, image=result["image"], text=result["text"], logit_scale=np.float64(result["logit_scale"]),
             group=args.group, model=args.model, pretrained=args.pretrained or "")
    print(f"infogap embed: {len(result['image'])} pairs of {args.model} -> {out}", file=sys.stderr)
    return 0
