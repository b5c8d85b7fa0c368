"""Attention-pooling colour head over frozen EfficientNet-Lite0 spatial features (experiment).

Not shipped: held-out family top-1 of the head alone 0.656 (head features, 7 x 7), 0.665 (block
14, 7 x 7) and 0.683 (block 10, 14 x 14), against 0.686 for the shipped linear prior over pooled
Lite0 features and the photo histogram; averaged with the shipped prior at most 0.699 (the weight
picked on the held-out photos, so optimistic).

``cache``: per labelled fashion photo, Lite0's feature maps (block 10: 112 x 14 x 14, block 14:
192 x 7 x 7, head: 1280 x 7 x 7) and per-cell colour statistics of the same photo on a 14 x 14
grid (mean Lab, product share from the backdrop model, a coarse soft LCh histogram), fp16, in
``var/bench/colour-attn/cache.npz``.

``train``: a small head predicts a weight per cell (two softmax heads over the cells, from a
projection of the cell's features, its mean Lab and its product share), pools the projected
features, the cells' Lab (mean and deviation) and their histograms with those weights, and
classifies the colour family (an auxiliary output names the exact colour); the features are
standardised and reduced to 128 whitened principal components of the training cells first.
Fitted with AdamW on the training split (``crc32(id) % 10 < 7``) minus a 15% validation slice
(``crc32(id + "val") % 100 < 15``) that picks the epoch, horizontal flips as augmentation, then
scored once on the held-out 30% (prediction averaged with the flipped photo's).

Run ``python -m benchmarks.train_colour_head cache`` (about 13 min on 2 shared cores), then
``python -m benchmarks.train_colour_head train --feature head`` (or ``--feature f14``, or
``--feature f10 --pca 96 --epochs 30``, the best).
"""

from __future__ import annotations

import argparse
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks.fashion_colour import in_training_split, load_photos
from search.colour import Family, lookup

CACHE_DIR = Path("var/bench/colour-attn")
GRID = 14
COLOUR_SIZE = 112
#: Coarse LCh bins of the per-cell histograms.
LIGHTNESS = (10.0, 30.0, 50.0, 70.0, 90.0)
CHROMA = (0.0, 10.0, 25.0, 45.0)
HUES = 12
BINS = len(LIGHTNESS) * (1 + (len(CHROMA) - 1) * HUES)


def cell_histograms(lab: NDArray[np.float32], grid: int) -> NDArray[np.float32]:
    """Soft LCh histogram of each cell of a square Lab image, each cell's summing to 1."""
    from indexer.colours import _hat_weights

    side = lab.shape[0]
    px = lab.reshape(-1, 3)
    n_l, n_c, n_h = len(LIGHTNESS), len(CHROMA) - 1, HUES
    per = n_l * (1 + n_c * n_h)
    rows = np.arange(side)[:, None] * grid // side
    cols = np.arange(side)[None, :] * grid // side
    cell = (rows * grid + cols).reshape(-1)
    chroma = np.hypot(px[:, 1], px[:, 2])
    hue = (np.degrees(np.arctan2(px[:, 2], px[:, 1])) % 360.0) / 360.0 * n_h
    l_low, l_up = _hat_weights(px[:, 0], LIGHTNESS)
    c_low, c_up = _hat_weights(chroma, CHROMA)
    h_low = np.floor(hue).astype(np.intp) % n_h
    h_up = (hue - np.floor(hue)).astype(np.float32)
    out = np.zeros(grid * grid * per, dtype=np.float64)
    for l_bin, l_w in ((l_low, 1.0 - l_up), (l_low + 1, l_up)):
        for c_bin, c_w in ((c_low, 1.0 - c_up), (c_low + 1, c_up)):
            for h_bin, h_w in ((h_low, 1.0 - h_up), ((h_low + 1) % n_h, h_up)):
                index = np.where(c_bin == 0, l_bin, n_l + (l_bin * n_c + c_bin - 1) * n_h + h_bin)
                weight = l_w * c_w * np.where(c_bin == 0, 0.5, h_w)
                out += np.bincount(cell * per + index, weights=weight, minlength=out.size)
    hist = out.reshape(grid * grid, per)
    hist /= np.maximum(hist.sum(axis=1, keepdims=True), 1e-9)
    return hist.astype(np.float32)


def colour_grid(rgb: NDArray[np.uint8]) -> tuple[NDArray[np.float32], ...]:
    """Per-cell mean Lab, product share and LCh histogram of a square photo."""
    from PIL import Image

    from indexer.colours import _background_mask, _rgb_to_lab

    small = np.asarray(
        Image.fromarray(rgb).resize((COLOUR_SIZE, COLOUR_SIZE), Image.Resampling.BOX),
        dtype=np.uint8,
    )
    lab = _rgb_to_lab(small)
    product = (~_background_mask(lab)).astype(np.float32)
    k = COLOUR_SIZE // GRID
    mean_lab = lab.reshape(GRID, k, GRID, k, 3).mean(axis=(1, 3)).reshape(-1, 3)
    share = product.reshape(GRID, k, GRID, k).mean(axis=(1, 3)).reshape(-1)
    hist = cell_histograms(lab, GRID)
    return mean_lab.astype(np.float32), share.astype(np.float32), hist


def cache(out: Path, limit: int | None = None) -> None:
    """Compute and store the feature maps and colour grids of every labelled photo."""
    import torch
    from PIL import Image, ImageOps

    from models.image import EfficientNetLite0Embedder, _resize, pad_to_square, to_rgb_array

    torch.set_num_threads(2)
    embedder = EfficientNetLite0Embedder()
    embedder.warm_up()
    model = embedder._model
    photos = load_photos()[:limit]
    n = len(photos)
    f10 = np.zeros((n, 112, 14, 14), np.float16)
    f14 = np.zeros((n, 192, 7, 7), np.float16)
    head = np.zeros((n, 1280, 7, 7), np.float16)
    labs = np.zeros((n, GRID * GRID, 3), np.float16)
    shares = np.zeros((n, GRID * GRID), np.float16)
    hists = np.zeros((n, GRID * GRID, BINS), np.float16)
    start = time.perf_counter()
    batch = 32
    for offset in range(0, n, batch):
        chunk = photos[offset : offset + batch]
        squares = []
        for j, photo in enumerate(chunk):
            with Image.open(photo.path) as opened:
                opened.load()
                rgb = pad_to_square(to_rgb_array(ImageOps.exif_transpose(opened)))
            squares.append(_resize(rgb, 224))
            lab, share, hist = colour_grid(rgb)
            labs[offset + j], shares[offset + j], hists[offset + j] = lab, share, hist
        x = torch.from_numpy((np.stack(squares).astype(np.float32) - 127.0) / 128.0)
        x = x.permute(0, 3, 1, 2).contiguous()
        with torch.inference_mode():
            y = model._swish(model._bn0(model._conv_stem(x)))
            for i, block in enumerate(model._blocks):
                y = block(y)
                if i == 10:
                    f10[offset : offset + len(chunk)] = y.numpy()
                if i == 14:
                    f14[offset : offset + len(chunk)] = y.numpy()
            y = model._swish(model._bn1(model._conv_head(y)))
            head[offset : offset + len(chunk)] = y.numpy()
        if offset % 640 == 0:
            print(f"{offset + len(chunk)}/{n} {time.perf_counter() - start:.0f} s", flush=True)
    np.savez(
        out,
        ids=np.array([p.product_id for p in photos]),
        labels=np.array([p.label for p in photos]),
        f10=f10,
        f14=f14,
        head=head,
        labs=labs,
        shares=shares,
        hists=hists,
    )
    print(f"wrote {out} in {time.perf_counter() - start:.0f} s")


FAMILIES: tuple[str, ...] = tuple(f.value for f in Family)


def _pool2(x: NDArray[np.float32]) -> NDArray[np.float32]:
    """``(n, 196, c)`` cells of the 14 x 14 grid -> ``(n, 49, c)`` means of 2 x 2 blocks."""
    n, _, c = x.shape
    return x.reshape(n, 7, 2, 7, 2, c).mean(axis=(2, 4)).reshape(n, 49, c)


def _head(cdim: int, bins: int, classes: int, names: int, args: argparse.Namespace) -> Any:
    """The attention-pooling head (a torch module)."""
    import torch
    from torch import nn

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.heads = args.heads
            self.proj = nn.Linear(cdim, args.rank)
            self.attn = nn.Sequential(
                nn.Linear(args.rank + 4, 64), nn.GELU(), nn.Linear(64, args.heads)
            )
            width = args.heads * (args.rank + 6 + bins)
            self.drop = nn.Dropout(args.drop)
            self.fdrop = nn.Dropout(0.1)
            self.cls = nn.Sequential(
                nn.Linear(width, 128), nn.GELU(), nn.Dropout(args.drop), nn.Linear(128, classes)
            )
            self.aux = nn.Linear(width, names)

        def forward(self, f: Any, lab: Any, share: Any, hist: Any) -> tuple[Any, Any]:
            z = self.proj(self.fdrop(f))
            w = torch.softmax(self.attn(torch.cat([z, lab, share[..., None]], -1)), dim=1)
            outs = []
            for h in range(self.heads):
                wh = w[..., h : h + 1]
                m = (wh * lab).sum(1)
                s = ((wh * (lab - m[:, None]) ** 2).sum(1) + 1e-6).sqrt()
                pooled = ((wh * hist).sum(1) + 1e-6).sqrt()
                outs.append(torch.cat([(wh * z).sum(1), m, s, pooled], -1))
            x = self.drop(torch.cat(outs, -1))
            return self.cls(x), self.aux(x)

    return Head()


def train(args: argparse.Namespace) -> None:
    """Fit the head on the training split, pick the epoch on the validation slice, score."""
    import torch
    from torch import nn

    from indexer.colours import default_model

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    names = list(default_model().names)
    data = np.load(args.cache)
    ids = [str(i) for i in data["ids"]]
    entries = [lookup(str(label)) for label in data["labels"]]
    fam = np.array([FAMILIES.index(str(e.family)) if e else -1 for e in entries])
    name = np.array([names.index(e.name) if e and e.name in names else -1 for e in entries])
    f = data[args.feature].astype(np.float32)
    n, c, grid = f.shape[0], f.shape[1], f.shape[2]
    f = f.reshape(n, c, -1).transpose(0, 2, 1)
    labs = data["labs"].astype(np.float32)
    shares = data["shares"].astype(np.float32)[..., None]
    hists = data["hists"].astype(np.float32)
    if grid == 7:
        labs, shares, hists = _pool2(labs), _pool2(shares), _pool2(hists)
    labs /= 100.0
    training = np.array([in_training_split(i) for i in ids])
    val = training & (fam >= 0)
    val &= np.array([zlib.crc32((i + "val").encode()) % 100 < 15 for i in ids])
    fit = training & (fam >= 0) & ~val
    test = ~training & (fam >= 0)
    rank = min(args.pca, c)  # block 10 has 112 channels: 96 were used
    cells = f[fit].reshape(-1, c)
    mu, sd = cells.mean(0), cells.std(0) + 1e-3
    cells = (cells - mu) / sd
    evals, evecs = np.linalg.eigh(cells.T @ cells / len(cells))
    basis = evecs[:, ::-1][:, :rank] / np.sqrt(evals[::-1][:rank] + 1e-3)
    f = (((f.reshape(-1, c) - mu) / sd) @ basis).reshape(n, -1, rank).astype(np.float32)
    tensors = [torch.from_numpy(np.ascontiguousarray(x)) for x in (f, labs, shares[..., 0], hists)]
    y, z = torch.from_numpy(fam), torch.from_numpy(name)
    model = _head(rank, hists.shape[-1], len(FAMILIES), len(names), args)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.wd)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)

    def flip(x: Any) -> Any:
        s = x.shape
        return x.reshape(s[0], grid, grid, *s[2:]).flip(2).reshape(s)

    def evaluate(mask: NDArray[np.bool_]) -> float:
        model.eval()
        with torch.no_grad():
            rows = torch.from_numpy(np.flatnonzero(mask))
            batch = [t[rows] for t in tensors]
            p = model(*batch)[0].softmax(-1) + model(*(flip(t) for t in batch))[0].softmax(-1)
            return float((p.argmax(-1) == y[rows]).float().mean())

    best, best_epoch, best_state = -1.0, 0, None
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        rng = np.random.default_rng(args.seed * 1000 + epoch)
        order = rng.permutation(np.flatnonzero(fit))
        for b in range(0, len(order), 64):
            rows = torch.from_numpy(order[b : b + 64])
            batch = [t[rows] for t in tensors]
            if rng.random() < 0.5:
                batch = [flip(t) for t in batch]
            logits, aux = model(*batch)
            loss = nn.functional.cross_entropy(logits, y[rows], label_smoothing=0.1)
            known = z[rows] >= 0
            if args.aux > 0 and bool(known.any()):
                loss = loss + args.aux * nn.functional.cross_entropy(aux[known], z[rows][known])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        accuracy = evaluate(val)
        if accuracy > best:
            best, best_epoch = accuracy, epoch
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
    assert best_state is not None
    model.load_state_dict(best_state)
    seconds = time.perf_counter() - start
    print(f"{args.feature}: validation {best:.3f} at epoch {best_epoch} ({seconds:.0f} s)")
    print(f"held-out family top-1 {evaluate(test):.3f} (n={int(test.sum())})")


def main(argv: list[str] | None = None) -> None:
    """Command line: ``cache`` or ``train``.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cache")
    c.add_argument("--limit", type=int, default=None)
    c.add_argument("--out", type=Path, default=CACHE_DIR / "cache.npz")
    t = sub.add_parser("train")
    t.add_argument("--cache", type=Path, default=CACHE_DIR / "cache.npz")
    t.add_argument("--feature", choices=("head", "f14", "f10"), default="head")
    t.add_argument("--pca", type=int, default=128)
    t.add_argument("--rank", type=int, default=64)
    t.add_argument("--heads", type=int, default=2)
    t.add_argument("--drop", type=float, default=0.3)
    t.add_argument("--wd", type=float, default=1e-3)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--epochs", type=int, default=40)
    t.add_argument("--aux", type=float, default=0.3, help="weight of the exact-name loss")
    t.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "cache":
        args.out.parent.mkdir(parents=True, exist_ok=True)
        cache(args.out, args.limit)
    else:
        train(args)


if __name__ == "__main__":
    main()
