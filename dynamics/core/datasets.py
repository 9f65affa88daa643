"""Paired views from natural images, for JEPA / MAE on real data (theory/generalized.md sec. 5).

The images are the two photographs scikit-learn ships inside its wheel (``china.jpg``, ``flower.jpg``,
427 x 640 RGB; reading them needs Pillow) or its 8 x 8 handwritten digits: nothing is downloaded.
Both packages are the optional extra ``pip install "dynamics[images]"``.

:func:`image_views` cuts n random patch pairs (x, y) from greyscale versions of the images:

* ``kind="neighbor"``: x a patch, y the adjacent patch to its right (context / target);
* ``kind="mask"``: y a patch, x the same patch with a square of side ``patch // 2`` at a random
  position set to the patch's mean (a masked context against the whole);
* ``kind="noise"``: x and y two copies of one patch with independent Gaussian pixel noise of standard
  deviation ``noise`` (in units of the image's pixel standard deviation).

Each view is flattened to ``patch**2`` features and centred (each feature's mean over the n pairs
removed), and the pixels are scaled so that the mean pixel variance is 1.
"""

from __future__ import annotations

import jax
import numpy as np

from .keys import as_key
from .validation import check_choice, check_int, check_positive

__all__ = ["image_views", "load_images", "IMAGES"]

IMAGES = ("photos", "digits")
_KINDS = ("neighbor", "mask", "noise")


def load_images(images="photos"):
    """Greyscale images as a list of 2-D float arrays: scikit-learn's two sample photographs
    (``"photos"``) or its 1797 8 x 8 digits (``"digits"``)."""
    check_choice("images", images, set(IMAGES))
    try:
        import sklearn.datasets as skd
    except ImportError:     # pragma: no cover - the extra is installed in the test environment
        raise ImportError("image_views needs scikit-learn (and Pillow for the photographs): "
                          "pip install 'dynamics[images]'") from None
    if images == "digits":
        return [np.asarray(im, float) for im in skd.load_digits().images]
    try:
        photos = skd.load_sample_images().images
    except ImportError:     # pragma: no cover
        raise ImportError("the sample photographs need Pillow: pip install 'dynamics[images]'") from None
    return [np.asarray(im, float) @ np.array([0.299, 0.587, 0.114]) for im in photos]


def image_views(kind="neighbor", *, patch=4, n=5000, key=0, images="photos", noise=0.5, remove_dc=True):
    """n paired views (x, y) from natural images (module docstring), each of shape (n, patch**2), or
    (n, patch**2 - 1) with ``remove_dc`` (the default): each patch's own mean brightness removed, in an
    orthonormal basis of the zero-mean patches (the usual contrast normalisation: the mean-brightness
    mode dominates the pixel covariance a hundredfold and would leak into every other mode)."""
    check_choice("kind", kind, set(_KINDS))
    patch = check_int("patch", patch, minimum=1)
    n = check_int("n", n, minimum=1, maximum=10 ** 7)
    noise = check_positive("noise", noise)
    imgs = load_images(images)
    h = min(im.shape[0] for im in imgs)
    w = min(im.shape[1] for im in imgs)
    width = 2 * patch if kind == "neighbor" else patch
    if patch > h or width > w:
        raise ValueError(f"patch = {patch} is too large for these images ({h} x {w} pixels"
                         + (", and kind='neighbor' needs two patches side by side" if kind == "neighbor" else "")
                         + f"): use patch <= {min(h, w // 2 if kind == 'neighbor' else w)}")
    if kind == "mask" and patch < 2:
        raise ValueError("patch must be >= 2 for kind='mask' (the masked square has side patch // 2)")
    rng = np.random.default_rng(np.asarray(jax.random.key_data(as_key(key)), dtype=np.uint32).ravel())
    which = rng.integers(0, len(imgs), n)
    r = rng.integers(0, h - patch + 1, n)
    c = rng.integers(0, w - width + 1, n)
    scale = np.sqrt(np.mean([im.var() for im in imgs]))
    rows = np.arange(patch)[None, :, None] + r[:, None, None]
    cols = np.arange(patch)[None, None, :] + c[:, None, None]
    x = np.empty((n, patch, patch))
    y = np.empty((n, patch, patch))
    for i in np.unique(which):          # one gather per image
        sel = which == i
        im = imgs[i] / scale
        x[sel] = im[rows[sel], cols[sel]]
        if kind == "neighbor":
            y[sel] = im[rows[sel], cols[sel] + patch]
    if kind == "mask":
        y = x.copy()
        m = max(1, patch // 2)
        mr = rng.integers(0, patch - m + 1, n)
        mc = rng.integers(0, patch - m + 1, n)
        mean = x.mean(axis=(1, 2))
        for j in range(n):
            x[j, mr[j]:mr[j] + m, mc[j]:mc[j] + m] = mean[j]
    elif kind == "noise":
        y = x + noise * rng.standard_normal(x.shape)
        x = x + noise * rng.standard_normal(x.shape)
    x = x.reshape(n, -1)
    y = y.reshape(n, -1)
    if remove_dc and patch > 1:
        # an orthonormal basis of the patches with zero mean (the complement of the constant vector)
        Q = np.linalg.qr(np.concatenate([np.ones((patch * patch, 1)), np.eye(patch * patch)[:, :-1]], axis=1))[0][:, 1:]
        x, y = x @ Q, y @ Q
    return x - x.mean(axis=0), y - y.mean(axis=0)
