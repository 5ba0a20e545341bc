"""Procedural 28x28 renderer of digits with the reference's attribute factors, vectorised over a batch.

Every random quantity comes from ``hash_uniform`` (a counter-based hash of a sample's key), so a
sample is a pure function of its key and its factor labels, whatever batch it is rendered in.
Factor semantics (reference: Morpho-MNIST):
- glyph: a digit from a bold font shipped with matplotlib (DejaVu/STIX faces), with a small per-sample
  affine jitter (rotation, shear, scale, shift) so a digit is not one fixed bitmap;
- thickness: morphological dilation ("thickening") or erosion ("thinning") of the stroke;
- swelling: a local radial warp centred on a stroke pixel, magnifying the stroke around it;
- fracture: three short breaks across the stroke, each perpendicular to the stroke direction;
- scaling: "small" rescales by 0.75 about the centre and pastes with a random offset of up to 2 px;
- colour: the stroke intensity times an RGB colour; background pixels stay black.

Dense targets (``dense=True``), for the dense-probe study: the object ``mask``; ``scale_depth``, the
old target that the ``scaling`` factor alone decides (1 for large objects, 1/0.75 for small ones,
``DEPTH_BACKGROUND`` elsewhere: a probe of it measures whether the word "small" was in the captions);
``depth``, a per-pixel surface no caption word determines: the glyph lies on a random plane at a random
camera distance (tilted in both directions) with a smooth random relief, depth defined on the object's
pixels (0, missing, elsewhere), and the stroke is shaded by it (intensity x 1.5 / depth, within
[0.3, 1]: the image shows its depth); and ``edge``, per pixel background, stroke interior or stroke
edge (a stroke pixel with a background neighbour).

The layout world (``layout`` labels: ``infogap.data.factors.LAYOUT_FACTORS``) places the rendered
28-px object in a ``SCENE_SIZE``-px scene: its centre uniform within the named cell of a 3 x 3 grid over
``SCENE_CENTRE`` (rows and columns), its scale uniform within the named size class (``SCENE_SCALE``) and
its surface's camera distance uniform within the named depth plane (``PLANE_DISTANCE``); the words are
coarse, the place, size and depth exact. Every image of the layout world is shaded by its depth (more
steeply: ``LAYOUT_SHADE_POWER``), dense or not, since its captions may name the plane. Every dense
target is then the scene's, pixel-exact, plus
``plane``: 1 + the depth plane's index on the object's pixels (0, missing, elsewhere, as ``depth``),
the one target a caption word decides alone wherever it is defined (the dense study's positive control).

Rendering is two steps: ``render_plan`` draws every random number of a batch from its keys (numpy,
on the CPU, in the loader worker) and ``render_images`` turns glyphs, plan and labels into images
with torch operations only, on whatever device the tensors are on. ``render`` does both on the
CPU; ``SyntheticDataModule(render_on_device=True)`` ships the plan and renders on the training
device, with the same numbers.
"""
from __future__ import annotations

import functools
import gzip
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from infogap.data.factors import COLOUR_RGB

SIZE = 28
SMALL_SCALE = 0.75
MAX_OFFSET_PX = 2.0
SWELL_RADIUS_PX = 7.0
SWELL_POWER = 1.0  # source radius = d * (d / r) ** power: magnification 1 / (1 + power) at the centre
BREAKS = 3
BREAK_HALF_WIDTH_PX = 0.9
BREAK_HALF_LENGTH_PX = 4.5
DEPTH_BACKGROUND = 2.0
SURFACE_DISTANCE = (1.5, 3.0)  # camera distance of the glyph's plane, uniform
SURFACE_TILT = 0.4  # plane slope per unit of normalised image coordinate (x, y in [-1, 1]), uniform in +-
SURFACE_RELIEF = 0.2  # amplitude of the relief, uniform in [0, SURFACE_RELIEF]
SHADE_REFERENCE, SHADE_MIN = 1.5, 0.3  # stroke intensity x clamp(SHADE_REFERENCE / depth, SHADE_MIN, 1)
# The layout world's scene (64 px: 8 x 8 tokens of a patch-8 ViT at the cost of 7 x 7 at 28 px, BENCHMARKS.md).
SCENE_SIZE = 64
SCENE_CENTRE = (20.0, 44.0)  # the object's centre (row and column, scene pixels) ranges over this; 3 cells per axis
SCENE_SCALE = ((1.0, 1.3), (1.3, 1.6), (1.6, 1.9))  # the object's scale per size class (its ~20-px glyph box -> 20 to 38 px)
PLANE_DISTANCE = ((1.5, 2.25), (2.25, 3.0))  # camera distance of the surface per depth plane (near, far): SURFACE_DISTANCE split in two
# the layout world's shading, intensity x clamp((SHADE_REFERENCE / depth) ** power, min, 1), on every image (the 28-px world
# shades only its dense renders): near objects 1.0 to 0.44, far ones 0.44 to 0.25, so the plane word names something visible
LAYOUT_SHADE_POWER, LAYOUT_SHADE_MIN = 2.0, 0.2

FONT_FILES = (
    "DejaVuSans-Bold.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "STIXGeneralBol.ttf",
)
# A second image distribution that no training run sees: regular-weight and Computer Modern faces (the
# learning-and-forgetting study measures forgetting out of domain on it).
HELD_OUT_FONT_FILES = (
    "cmr10.ttf",
    "cmss10.ttf",
    "cmtt10.ttf",
    "STIXGeneralItalic.ttf",
    "DejaVuSansMono-Oblique.ttf",
)
GLYPH_SETS = {"train": FONT_FILES, "held_out": HELD_OUT_FONT_FILES}

# ---------------------------------------------------------------------------------------------
# Counter-based randomness: uniform numbers as a hash of (key, stream, slot).
_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array (wrapping arithmetic)."""
    z = np.array(z, dtype=np.uint64, copy=True)
    with np.errstate(over="ignore"):
        z ^= z >> _U64(30)
        z *= _U64(0xBF58476D1CE4E5B9)
        z ^= z >> _U64(27)
        z *= _U64(0x94D049BB133111EB)
        z ^= z >> _U64(31)
    return z


def sample_keys(seed: int, epoch: int, index: np.ndarray) -> np.ndarray:
    """One 64-bit key per sample: a pure function of (seed, epoch, index)."""
    base = _mix(_mix(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64)) ^ np.array([epoch & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))
    idx = np.asarray(index, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        return _mix(_mix(base) ^ _mix(idx + _GOLDEN))


def hash_uniform(keys: np.ndarray, stream: int, n: int) -> np.ndarray:
    """(len(keys), n) uniforms in [0, 1), independent across streams and slots."""
    slots = _mix(np.arange(n, dtype=np.uint64) + _U64(stream) * _U64(0x10001) + _GOLDEN)
    h = _mix(keys[:, None] ^ slots[None, :])
    return (h >> _U64(11)).astype(np.float64) * (1.0 / (1 << 53))


# Streams: one name per random quantity.
STREAM = {name: i + 1 for i, name in enumerate(
    ["factors", "cooccurrence", "caption_pick", "caption_order", "glyph", "jitter", "swell", "fracture", "offset", "prompt", "surface", "layout_factors", "layout", "layout_order"]
)}


# ---------------------------------------------------------------------------------------------
# Glyph templates.
def _font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@functools.lru_cache(maxsize=2)
def font_templates(fonts: tuple[str, ...] = FONT_FILES) -> torch.Tensor:
    """(10, n_fonts, 28, 28) float32 digit glyphs in [0, 1], MNIST-like: a ~20 px box, centred by mass."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    hi = SIZE * 4
    out = np.zeros((10, len(fonts), SIZE, SIZE), dtype=np.float32)
    for f, name in enumerate(fonts):
        font = ImageFont.truetype(str(_font_dir() / name), size=int(hi * 0.8))
        for d in range(10):
            canvas = Image.new("L", (hi * 2, hi * 2), 0)
            ImageDraw.Draw(canvas).text((hi // 2, hi // 4), str(d), fill=255, font=font)
            canvas = canvas.filter(ImageFilter.MaxFilter(3))  # MNIST-like stroke width at 28 px
            bbox = canvas.getbbox()
            glyph = canvas.crop(bbox)
            w, h = glyph.size
            scale = 80.0 / max(w, h)  # 20 px at 28 px resolution
            glyph = glyph.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.LANCZOS)
            big = Image.new("L", (hi, hi), 0)
            big.paste(glyph, ((hi - glyph.size[0]) // 2, (hi - glyph.size[1]) // 2))
            arr = np.asarray(big.resize((SIZE, SIZE), Image.BOX), dtype=np.float32) / 255.0
            out[d, f] = _centre_by_mass(arr)
    return torch.from_numpy(out)


def _centre_by_mass(img: np.ndarray) -> np.ndarray:
    total = img.sum()
    if total <= 0:
        return img
    ys, xs = np.indices(img.shape)
    dy = int(round(SIZE / 2 - 0.5 - (ys * img).sum() / total))
    dx = int(round(SIZE / 2 - 0.5 - (xs * img).sum() / total))
    return np.roll(np.roll(img, dy, axis=0), dx, axis=1)


def load_mnist_idx(directory: str | Path, train: bool) -> tuple[torch.Tensor, np.ndarray]:
    """Read MNIST IDX files (optionally .gz) from a local directory: images (N, 28, 28) in [0, 1], labels (N,)."""
    directory = Path(directory)
    prefix = "train" if train else "t10k"
    arrays = []
    for kind, magic in (("images-idx3-ubyte", 2051), ("labels-idx1-ubyte", 2049)):
        candidates = [directory / f"{prefix}-{kind}", directory / f"{prefix}-{kind}.gz"]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise FileNotFoundError(f"MNIST file not found: {candidates[0]}[.gz]")
        raw = gzip.open(path, "rb").read() if path.suffix == ".gz" else path.read_bytes()
        got = int.from_bytes(raw[:4], "big")
        if got != magic:
            raise ValueError(f"{path}: not an IDX file of {kind} (magic {got}, expected {magic})")
        ndim = raw[3]
        dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
        data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
        if data.size != int(np.prod(dims)):
            raise ValueError(f"{path}: expected {int(np.prod(dims))} values for shape {dims}, found {data.size}")
        arrays.append(data.reshape(dims))
    images, labels = arrays
    if images.shape[1:] != (SIZE, SIZE) or len(images) != len(labels):
        raise ValueError(f"{directory}: MNIST images must be 28x28 with one label each, got {images.shape} and {labels.shape}")
    return torch.from_numpy(images.astype(np.float32) / 255.0), labels.astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Image operations on (B, 1, H, W) batches.
_COORDS = torch.stack(torch.meshgrid(torch.arange(SIZE, dtype=torch.float32), torch.arange(SIZE, dtype=torch.float32), indexing="ij"), -1)  # (H, W, 2) as (row, col)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _plus_shifts(x: torch.Tensor) -> list[torch.Tensor]:
    p = F.pad(x, (1, 1, 1, 1))
    return [p[..., :-2, 1:-1], p[..., 2:, 1:-1], p[..., 1:-1, :-2], p[..., 1:-1, 2:]]


def dilate(x: torch.Tensor) -> torch.Tensor:
    """Grayscale dilation with a 3x3 plus-shaped element: thickens every stroke by ~2 px."""
    out = x.clone()
    for shifted in _plus_shifts(x):
        torch.maximum(out, shifted, out=out)
    return out


def erode(x: torch.Tensor) -> torch.Tensor:
    """Grayscale erosion with a 3x3 plus-shaped element: thins every stroke by ~2 px."""
    out = x.clone()
    for shifted in _plus_shifts(x):
        torch.minimum(out, shifted, out=out)
    return out


def pick_stroke_pixel(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Pixel coordinates (row, col) of stroke pixels (intensity > 0.5) chosen by uniforms ``u``:
    (B,) -> (B, 2) or (B, m) -> (B, m, 2); the image centre where an image has no stroke pixel."""
    single = u.dim() == 1
    u = u[:, None] if single else u
    mask = x.flatten(1) > 0.5
    cum = mask.cumsum(1)
    count = cum[:, -1:]
    target = torch.minimum((u * count).long(), (count - 1).clamp(min=0)) + 1
    idx = torch.searchsorted(cum, target).clamp(max=SIZE * SIZE - 1)
    rc = torch.stack([idx // SIZE, idx % SIZE], -1).float()
    rc = torch.where((count > 0)[..., None], rc, torch.full_like(rc, (SIZE - 1) / 2))
    return rc[:, 0] if single else rc


def swell(x: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """Local radial warp: within radius r of ``centre`` the source point of p is c + (p - c) (d/r)^power."""
    cr, cc = centre[:, 0, None, None], centre[:, 1, None, None]
    coords = _COORDS.to(x.device)
    dr, dc = coords[None, ..., 0] - cr, coords[None, ..., 1] - cc  # (B, H, W)
    dist = torch.sqrt(dr * dr + dc * dc)
    factor = dist / SWELL_RADIUS_PX
    if SWELL_POWER != 1.0:
        factor = factor**SWELL_POWER
    factor = torch.where(dist < SWELL_RADIUS_PX, factor, torch.ones_like(dist))
    grid = torch.empty(dist.shape + (2,), device=x.device)  # grid_sample wants (x=col, y=row), in [-1, 1]
    for i, (c, d) in enumerate(((cc, dc), (cr, dr))):
        g = grid[..., i]
        torch.mul(d, factor, out=g)
        g.add_(c).mul_(2).add_(1).div_(SIZE).sub_(1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


# Sobel derivative of a 3x3 box-smoothed image, as one 5x5 kernel per direction (rows, cols).
_SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
_GRAD_COL = F.conv2d(F.pad(_SOBEL[None, None], (2, 2, 2, 2)), torch.ones(1, 1, 3, 3) / 9, padding=0)[0, 0]
_GRAD_ROW = _GRAD_COL.T.contiguous()
_AR5 = torch.arange(5)


def _gradient_at(x: torch.Tensor, r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """(..., 2) smoothed intensity gradient (d/drow, d/dcol) at pixels (r, c) of shape (B, ...) of each image."""
    xp = F.pad(x[:, 0], (2, 2, 2, 2))
    b = torch.arange(x.shape[0], device=x.device).view(-1, *([1] * (r.dim() + 1)))
    ar5 = _AR5.to(x.device)
    rows = (r[..., None] + ar5)[..., :, None]
    cols = (c[..., None] + ar5)[..., None, :]
    patch = xp[b, rows, cols]  # (B, ..., 5, 5) centred on (r, c)
    return torch.stack([(patch * _GRAD_ROW.to(x.device)).sum((-2, -1)), (patch * _GRAD_COL.to(x.device)).sum((-2, -1))], -1)


_WIN = torch.arange(-int(BREAK_HALF_LENGTH_PX) - 1, int(BREAK_HALF_LENGTH_PX) + 2)  # window offsets around a break
_PADW = int(_WIN[-1])


def fracture(x: torch.Tensor, u_pos: torch.Tensor, u_dir: torch.Tensor) -> torch.Tensor:
    """Cut ``BREAKS`` short gaps across the stroke, each perpendicular to the local stroke direction
    (along the intensity gradient at a random stroke pixel; a random direction where it vanishes).
    All breaks are cut at once: each is a window of offsets around its centre."""
    n = x.shape[0]
    side = SIZE + 2 * _PADW
    centres = pick_stroke_pixel(x, u_pos).long()  # (B, k, 2)
    r, col = centres[..., 0], centres[..., 1]
    g = _gradient_at(x, r, col)  # (B, k, 2)
    angle = 2 * torch.pi * u_dir
    fallback = torch.stack([torch.cos(angle), torch.sin(angle)], -1)
    norm = g.norm(dim=-1, keepdim=True)
    g = torch.where(norm > 1e-3, g / norm.clamp(min=1e-12), fallback)
    g0, g1 = g[..., 0, None, None], g[..., 1, None, None]  # (B, k, 1, 1)
    win = _WIN.to(x.device)
    dr, dc = win[:, None].float(), win[None, :].float()
    along = dr * g0 + dc * g1
    across = dc * g0 - dr * g1
    hit = (along.abs() <= BREAK_HALF_LENGTH_PX) & (across.abs() <= BREAK_HALF_WIDTH_PX)  # (B, k, w, w)
    flat = (torch.arange(n, device=x.device)[:, None, None, None] * side * side
            + (r[..., None, None] + _PADW + win[:, None]) * side + (col[..., None, None] + _PADW + win[None, :]))
    cut = torch.zeros(n * side * side, dtype=torch.bool, device=x.device)
    cut[flat[hit]] = True
    cut = cut.view(n, side, side)[:, _PADW:_PADW + SIZE, _PADW:_PADW + SIZE]
    return x.masked_fill(cut[:, None], 0.0)


def rescale(x: torch.Tensor, scale: torch.Tensor, offset_px: torch.Tensor) -> torch.Tensor:
    """Rescale about the image centre by ``scale`` (B,) and shift by ``offset_px`` (B, 2) as (row, col)."""
    inv = 1.0 / scale
    off = offset_px * (2.0 / SIZE)
    zero = torch.zeros_like(inv)
    theta = torch.stack([
        torch.stack([inv, zero, -off[:, 1] * inv], 1),
        torch.stack([zero, inv, -off[:, 0] * inv], 1),
    ], 1)
    return _affine(x, theta)


def jitter_theta(u: torch.Tensor) -> torch.Tensor:
    """Per-sample affine stroke variation from 5 uniforms (B, 5): rotation +-12 deg, shear +-0.15, scale 0.9-1.1, shift +-1 px."""
    rot = (u[:, 0] * 2 - 1) * np.deg2rad(12)
    shear = (u[:, 1] * 2 - 1) * 0.15
    zoom = 0.9 + 0.2 * u[:, 2]
    shift = (u[:, 3:5] * 2 - 1) * (2.0 / SIZE)
    cos, sin = torch.cos(rot) / zoom, torch.sin(rot) / zoom
    theta = torch.stack([
        torch.stack([cos, -sin + shear * cos, shift[:, 0]], 1),
        torch.stack([sin, cos + shear * sin, shift[:, 1]], 1),
    ], 1)
    return theta


def _on_rows(x: torch.Tensor, rows: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Apply ``fn`` to the rows selected by the boolean ``rows`` only (the others are left untouched)."""
    if not bool(rows.any()):
        return x
    if bool(rows.all()):
        return fn(x)
    idx = rows.nonzero()[:, 0]
    x = x.clone()
    x[idx] = fn(x[idx])
    return x


def render_plan(object_keys: np.ndarray, *, jitter: bool = True, layout: bool = False) -> dict[str, torch.Tensor]:
    """Every random number the renderer uses, per object, drawn from its key as float32 tensors:
    ``jitter`` (B, 5; absent without jitter), ``swell`` (B,), ``fracture`` (B, 2 x BREAKS),
    ``offset`` (B, 2), ``surface`` (B, 7) and with ``layout`` the place within the layout words' bins
    (B, 3: row, column, scale) uniforms. A row's numbers do not depend on its factors (a factor that is off
    ignores them), so the plan of a batch is a few floats per sample to ship to another device."""
    def draw(stream: str, n: int) -> torch.Tensor:
        return torch.from_numpy(hash_uniform(object_keys, STREAM[stream], n)).float()

    plan = {"swell": draw("swell", 1)[:, 0], "fracture": draw("fracture", 2 * BREAKS), "offset": draw("offset", 2), "surface": draw("surface", 7)}
    if jitter:
        plan["jitter"] = draw("jitter", 5)
    if layout:
        plan["layout"] = draw("layout", 3)
    return plan


@torch.no_grad()
def render_images(glyphs: torch.Tensor, plan: dict[str, torch.Tensor], labels: dict[str, torch.Tensor], *,
                  dense: bool = False, layout: Optional[dict[str, torch.Tensor]] = None) -> dict[str, torch.Tensor]:
    """Render a batch from base strokes ``glyphs`` (B, 28, 28), a ``render_plan`` and the factor
    ``labels`` (index tensors), with torch operations only, on the device of ``glyphs`` (the plan and
    labels are moved there).

    Returns ``image`` (B, 3, 28, 28) float32 in [0, 1], and with ``dense`` (see the module docstring)
    an object ``mask`` (B, 28, 28) uint8, ``edge`` classes (B, 28, 28) uint8, the surface ``depth``
    (B, 28, 28) float32 on the object (0 elsewhere; the stroke shaded by it) and ``scale_depth``
    (B, 28, 28) float32 (1 for large objects, 1/0.75 for small ones, ``DEPTH_BACKGROUND`` elsewhere).
    With ``layout`` (position, size and plane index tensors; the plan drawn with ``layout=True``) the
    object is placed in a ``SCENE_SIZE``-px scene (``place``) and every map is the scene's, with the
    control target ``plane`` (B, S, S) float32, 1 + the plane's index on the object (0 elsewhere).
    """
    device = glyphs.device
    plan = {name: u.to(device) for name, u in plan.items()}
    labels = {name: v.to(device) for name, v in labels.items()}
    x = glyphs[:, None].float()
    if "jitter" in plan:
        x = _affine(x, jitter_theta(plan["jitter"]))

    thickness = labels["thickness"]
    x = _on_rows(x, thickness == 1, dilate)
    x = _on_rows(x, thickness == 2, erode)

    swelling = labels["swelling"] == 1
    x = _on_rows(x, swelling, lambda z: swell(z, pick_stroke_pixel(z, plan["swell"][swelling])))

    fractured = labels["fracture"] == 1
    u = plan["fracture"][fractured]
    x = _on_rows(x, fractured, lambda z: fracture(z, u[:, :BREAKS], u[:, BREAKS:]))

    small = labels["scaling"] == 1
    offset = (plan["offset"][small] * 2 - 1) * MAX_OFFSET_PX
    x = _on_rows(x, small, lambda z: rescale(z, torch.full((z.shape[0],), SMALL_SCALE, device=device), offset))

    x = x.clamp_(0, 1)
    distance = None
    if layout is not None:
        layout = {name: v.to(device) for name, v in layout.items()}
        centre, scale, distance = scene_layout(layout, plan["layout"], plan["surface"][:, 0])
        x = place(x, centre, scale, SCENE_SIZE).clamp_(0, 1)
    rgb = torch.from_numpy(COLOUR_RGB).to(device)[labels["colour"]]  # (B, 3)
    if not dense and layout is None:  # the 28-px world's training images carry no depth (its words name none)
        return {"image": x * rgb[:, :, None, None]}
    depth = surface_depth(plan["surface"], size=x.shape[-1], distance=distance)
    if layout is None:
        shade = (SHADE_REFERENCE / depth).clamp(SHADE_MIN, 1.0)
    else:  # the layout world shades every image, so that the plane word names something visible, and more steeply
        shade = ((SHADE_REFERENCE / depth) ** LAYOUT_SHADE_POWER).clamp(LAYOUT_SHADE_MIN, 1.0)
    image = x * shade[:, None] * rgb[:, :, None, None]
    if not dense:
        return {"image": image}
    mask = x[:, 0] > 0.5
    out = {"image": image, "mask": mask.to(torch.uint8)}
    out["depth"] = torch.where(mask, depth, torch.zeros((), device=device))
    out["edge"] = (mask.to(torch.uint8) + (mask & ~erode(mask[:, None].float())[:, 0].bool()).to(torch.uint8))  # 0 background, 1 interior, 2 edge
    depth_obj = torch.where(small, 1.0 / SMALL_SCALE, 1.0)[:, None, None].to(x.dtype)
    out["scale_depth"] = torch.where(mask, depth_obj.expand_as(x[:, 0]), torch.tensor(DEPTH_BACKGROUND, device=device))
    if layout is not None:
        out["plane"] = torch.where(mask, (1.0 + layout["plane"].to(x.dtype))[:, None, None], torch.zeros((), device=device))
    return out


def scene_layout(layout: dict[str, torch.Tensor], u: torch.Tensor, u_distance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The exact layout within the words' bins: the object's centre (B, 2) as (row, column) scene pixels,
    uniform within the ``position`` cell of a 3 x 3 grid over ``SCENE_CENTRE``; its scale (B,), uniform
    within the ``size`` class; its surface's camera distance (B,), uniform within the ``plane``. ``u``:
    (B, 3) uniforms (row, column, scale), ``u_distance`` (B,) the surface's distance uniform."""
    lo, hi = SCENE_CENTRE
    cell = torch.stack([layout["position"] // 3, layout["position"] % 3], 1).to(u.dtype)
    centre = lo + (cell + u[:, :2]) / 3 * (hi - lo)
    scales = torch.tensor(SCENE_SCALE, dtype=u.dtype, device=u.device)[layout["size"]]
    scale = scales[:, 0] + (scales[:, 1] - scales[:, 0]) * u[:, 2]
    planes = torch.tensor(PLANE_DISTANCE, dtype=u.dtype, device=u.device)[layout["plane"]]
    distance = planes[:, 0] + (planes[:, 1] - planes[:, 0]) * u_distance.to(u.dtype)
    return centre, scale, distance


def place(x: torch.Tensor, centre: torch.Tensor, scale: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 1, size, size): the 28-px objects ``x`` scaled by ``scale`` (B,) with their centre (pixel
    13.5, 13.5) at ``centre`` (B, 2; row, column in scene pixels): scene pixel P samples object pixel
    13.5 + (P - centre) / scale, bilinearly (zero outside the object's image)."""
    a = size / (SIZE * scale)
    t = (size / 2 - 0.5 - centre) / (SIZE / 2 * scale[:, None])  # (B, 2) as (row, column)
    zero = torch.zeros_like(a)
    theta = torch.stack([torch.stack([a, zero, t[:, 1]], 1), torch.stack([zero, a, t[:, 0]], 1)], 1)
    grid = F.affine_grid(theta, [x.shape[0], x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def surface_depth(u: torch.Tensor, size: int = SIZE, distance: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(B, size, size) depth of a random surface per image from 7 uniforms (B, 7): camera distance D, slopes
    a and b, relief amplitude h, frequencies f, g and phase p; with x, y in [-1, 1] across the image,
    depth = D + a x + b y + h sin(pi (f x + p)) cos(pi g y). Nothing of it depends on a factor; in the
    layout world D is ``distance`` (B,), within the named depth plane."""
    coords = torch.arange(size, dtype=torch.float32, device=u.device) / (size - 1) * 2 - 1
    y, x = coords[None, :, None], coords[None, None, :]
    lo, hi = SURFACE_DISTANCE
    d = (lo + (hi - lo) * u[:, 0] if distance is None else distance)[:, None, None]
    a, b = ((u[:, 1:3] * 2 - 1) * SURFACE_TILT)[..., None, None].unbind(1)
    h = SURFACE_RELIEF * u[:, 3, None, None]
    f, g, p = (0.5 + u[:, 4, None, None]), (0.5 + u[:, 5, None, None]), 2 * u[:, 6, None, None]
    return d + a * x + b * y + h * torch.sin(torch.pi * (f * x + p)) * torch.cos(torch.pi * g * y)


def render(
    glyphs: torch.Tensor,
    object_keys: np.ndarray,
    labels: dict[str, np.ndarray],
    *,
    jitter: bool = True,
    dense: bool = False,
    layout: Optional[dict[str, np.ndarray]] = None,
) -> dict[str, torch.Tensor]:
    """Render a batch on the CPU: ``glyphs`` (B, 28, 28) are the base strokes, ``object_keys`` seed the
    per-object randomness (jitter, swelling centre, breaks, offset, place in the scene), ``labels`` holds
    the factor indices (numpy) and ``layout`` the layout words' indices (the layout world's scenes).
    ``render_images`` of ``render_plan``; see there for what it returns."""
    tensors = {f: torch.from_numpy(np.ascontiguousarray(v)) for f, v in labels.items()}
    scene = None if layout is None else {f: torch.from_numpy(np.ascontiguousarray(v)) for f, v in layout.items()}
    return render_images(glyphs, render_plan(object_keys, jitter=jitter, layout=layout is not None), tensors, dense=dense, layout=scene)


def glyph_choice(object_keys: np.ndarray, digits: np.ndarray, n_fonts: int) -> np.ndarray:
    """Which font renders each object (per-object, from its key)."""
    return np.minimum((hash_uniform(object_keys, STREAM["glyph"], 1)[:, 0] * n_fonts).astype(np.int64), n_fonts - 1)


def mnist_choice(object_keys: np.ndarray, digits: np.ndarray, by_digit: list[np.ndarray]) -> np.ndarray:
    """An MNIST image of the requested digit for each object (from its key)."""
    u = hash_uniform(object_keys, STREAM["glyph"], 1)[:, 0]
    out = np.empty(len(digits), dtype=np.int64)
    for d in np.unique(digits):
        rows = np.nonzero(digits == d)[0]
        pool = by_digit[int(d)]
        if len(pool) == 0:
            raise ValueError(f"the MNIST source has no image of digit {d}")
        out[rows] = pool[np.minimum((u[rows] * len(pool)).astype(np.int64), len(pool) - 1)]
    return out


class GlyphSource:
    """Base strokes: font glyphs (default, nothing to download; ``glyph_set`` ``train`` or the
    ``held_out`` faces no training run sees) or real MNIST digits from a local directory."""

    def __init__(self, mnist_dir: Optional[str] = None, train: bool = True, glyph_set: str = "train"):
        self.mnist_dir = mnist_dir
        if glyph_set not in GLYPH_SETS:
            raise ValueError(f"glyph set {glyph_set!r}: choose one of {', '.join(GLYPH_SETS)}")
        if mnist_dir:
            self.images, labels = load_mnist_idx(mnist_dir, train)
            self.by_digit = [np.nonzero(labels == d)[0] for d in range(10)]
        else:
            self.templates = font_templates(GLYPH_SETS[glyph_set])

    @property
    def jitter(self) -> bool:
        return self.mnist_dir is None  # real handwriting already varies

    def glyphs(self, object_keys: np.ndarray, digits: np.ndarray) -> torch.Tensor:
        if self.mnist_dir:
            return self.images[torch.from_numpy(mnist_choice(object_keys, digits, self.by_digit))]
        fonts = glyph_choice(object_keys, digits, self.templates.shape[1])
        return self.templates[torch.from_numpy(digits), torch.from_numpy(fonts)]
