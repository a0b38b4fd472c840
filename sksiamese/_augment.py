"""Random small affine distortions of image batches (torch only).

Used by the training iterator when ``augment=True``: every time a batch is drawn,
each image gets its own small rotation, shear, scaling and shift, in the spirit of
the distortions of Koch et al. (2015), so the encoder sees a slightly different
drawing of each sample in every epoch.
"""

import math

import torch
import torch.nn.functional as F

# Ranges of the random distortions: rotation (degrees), shear (radians), scale
# factor per axis, and shift as a fraction of the image side.
ROTATION = 10.0
SHEAR = 0.15
SCALE = (0.9, 1.1)
SHIFT = 0.08


def random_affine(x, image_shape, generator=None):
    """Apply an independent random small affine transform to each image.

    Parameters
    ----------
    x : torch.Tensor of shape (batch, n_features) or (batch, 2, n_features)
        Images as flat rows (pairs: two images per row), ``n_features`` being
        ``prod(image_shape)``.
    image_shape : tuple of int
        ``(channels, height, width)``.
    generator : torch.Generator, default=None
        Source of randomness (CPU generator).

    Returns
    -------
    x_distorted : torch.Tensor of the shape and dtype of ``x``

    Notes
    -----
    Pixels that come from outside the image repeat the border, so an image whose
    border is background (as after scaling, where background need not be 0)
    keeps a uniform background.
    """
    shape = x.shape
    images = x.reshape(-1, *image_shape).float()
    n = len(images)

    def uniform(low, high):
        u = torch.rand(n, generator=generator)
        return (low + (high - low) * u).to(images.device)

    angle = uniform(-ROTATION, ROTATION) * (math.pi / 180.0)
    shear = uniform(-SHEAR, SHEAR)
    sx, sy = uniform(*SCALE), uniform(*SCALE)
    # affine_grid works in [-1, 1] coordinates: a shift of 2 * SHIFT spans
    # SHIFT of the image side.
    tx, ty = uniform(-2 * SHIFT, 2 * SHIFT), uniform(-2 * SHIFT, 2 * SHIFT)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # rotation @ shear @ scale
    a = torch.stack(
        [
            torch.stack([cos * sx, (cos * shear - sin) * sy, tx], dim=1),
            torch.stack([sin * sx, (sin * shear + cos) * sy, ty], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(a, list(images.shape), align_corners=False)
    out = F.grid_sample(
        images, grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    return out.reshape(shape).to(x.dtype)
