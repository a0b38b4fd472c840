"""Encoders and the twin module (torch only, no scikit-learn here)."""

import math

import torch
import torch.nn.functional as F
from torch import nn

DISTANCES = ("euclidean", "manhattan", "cosine")


class MLPEncoder(nn.Module):
    """Fully connected encoder: ``Linear -> ReLU`` blocks, then a linear embedding.

    Parameters
    ----------
    n_inputs : int
    hidden_layer_sizes : tuple of int
    embedding_dim : int
    dropout : float
    """

    def __init__(
        self, n_inputs, hidden_layer_sizes=(128, 64), embedding_dim=32, dropout=0.0
    ):
        super().__init__()
        layers = []
        width = n_inputs
        for size in hidden_layer_sizes:
            layers += [nn.Linear(width, size), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, embedding_dim))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)


class CNNEncoder(nn.Module):
    """Convolutional encoder for images given as flat rows.

    Up to four blocks of ``3x3 conv (64) -> batch norm -> ReLU -> 2x2 max pool``
    (the "Conv-4" network of matching and prototypical networks), while the image
    is at least 2 pixels wide, then a linear embedding.

    Parameters
    ----------
    image_shape : tuple of int
        ``(channels, height, width)``.
    embedding_dim : int
    channels : int
        Filters per convolution.
    n_blocks : int
        Maximum number of blocks.
    """

    def __init__(self, image_shape, embedding_dim=64, channels=64, n_blocks=4):
        super().__init__()
        self.image_shape = tuple(image_shape)
        c, h, w = self.image_shape
        blocks = []
        for _ in range(n_blocks):
            if min(h, w) < 2:
                break
            blocks += [
                nn.Conv2d(c, channels, 3, padding=1),
                nn.BatchNorm2d(channels),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            c, h, w = channels, h // 2, w // 2
        self.features = nn.Sequential(*blocks)
        self.embed = nn.Linear(c * h * w, embedding_dim)

    def forward(self, x):
        x = x.reshape(len(x), *self.image_shape)
        return self.embed(self.features(x).flatten(1))


class SiameseModule(nn.Module):
    """The twin: one encoder shared by both sides, and how two embeddings compare.

    ``forward`` embeds a batch. ``pairwise`` and ``rowwise`` return
    dissimilarities (lower = more alike): a distance, or, with ``head=True``, minus
    the logit of a learned linear head on ``|a - b|`` (Koch et al. 2015).

    Parameters
    ----------
    encoder : torch.nn.Module
    distance : {"euclidean", "manhattan", "cosine"}
    head : bool
    embedding_dim : int
        Output width of the encoder; needed for the head.
    """

    def __init__(self, encoder, distance="euclidean", head=False, embedding_dim=None):
        super().__init__()
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}; got {distance!r}.")
        self.encoder = encoder
        self.distance = distance
        self.head = None
        if head:
            self.head = nn.Linear(embedding_dim, 1)
            # Start as "closer is more alike": negative weights on |a - b|.
            with torch.no_grad():
                self.head.weight.uniform_(-2.0, -1.0).div_(math.sqrt(embedding_dim))
                self.head.bias.fill_(1.0)

    def forward(self, x):
        return self.encoder(x)

    def pairwise(self, a, b, squared=False):
        """Dissimilarity of every row of ``a`` to every row of ``b``."""
        if self.head is not None:
            w, bias = self.head.weight[0].to(a.dtype), self.head.bias.to(a.dtype)
            return -((a[:, None, :] - b[None, :, :]).abs() @ w + bias)
        if self.distance == "euclidean":
            sq = (
                a.pow(2).sum(1)[:, None] + b.pow(2).sum(1)[None, :] - 2.0 * (a @ b.T)
            ).clamp(min=0.0)
            return sq if squared else sq.clamp(min=1e-12).sqrt()
        if self.distance == "manhattan":
            return torch.cdist(a, b, p=1.0)
        return 1.0 - F.normalize(a, dim=1) @ F.normalize(b, dim=1).T

    def smallest(self, a, b, k, indices=False):
        """The ``k`` smallest dissimilarities of each row of ``a`` to the rows of
        ``b``, ascending (with their column indices in ``b`` if ``indices``).

        Equal to ``topk(pairwise(a, b), k, largest=False)`` but cheaper: for the
        euclidean and cosine distances, rows are ranked by one matrix product
        and only the ``k`` kept values are turned into distances.
        """
        if self.head is None and self.distance == "euclidean":
            part = torch.addmm(b.pow(2).sum(1)[None, :], a, b.T, alpha=-2.0)
            part, idx = torch.topk(part, k, dim=1, largest=False)
            d = (part + a.pow(2).sum(1)[:, None]).clamp(min=1e-12).sqrt()
        elif self.head is None and self.distance == "cosine":
            sim = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T
            sim, idx = torch.topk(sim, k, dim=1)
            d = 1.0 - sim
        else:
            d, idx = torch.topk(self.pairwise(a, b), k, dim=1, largest=False)
        return (d, idx) if indices else d

    def rowwise(self, a, b, squared=False):
        """Dissimilarity of row ``i`` of ``a`` to row ``i`` of ``b``."""
        if self.head is not None:
            w, bias = self.head.weight[0].to(a.dtype), self.head.bias.to(a.dtype)
            return -((a - b).abs() @ w + bias)
        if self.distance == "euclidean":
            sq = (a - b).pow(2).sum(1)
            return sq if squared else sq.clamp(min=1e-12).sqrt()
        if self.distance == "manhattan":
            return (a - b).abs().sum(1)
        return 1.0 - F.cosine_similarity(a, b, dim=1)
