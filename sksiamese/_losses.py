"""Pair, triplet, prototype and neighbourhood losses (torch only).

Every loss takes a matrix (or a vector) of *dissimilarities* produced by
:meth:`SiameseModule.pairwise` (or ``rowwise``): a distance for the metric losses,
minus the logit of "same" for the learned pair head. Lower always means more alike.
"""

import torch
import torch.nn.functional as F
from torch import nn

LOSSES = ("contrastive", "bce", "triplet", "prototype", "nca")


def _weighted_mean(values, weights=None):
    """Mean of ``values``; ``weights`` apply along its last dimension (leading
    dimensions are ensemble members)."""
    if weights is None:
        return values.mean()
    weights = weights.expand_as(values)
    return (values * weights).sum() / weights.sum()


def _balanced_mean(values, positive, weights=None):
    """Mean over positive pairs and mean over negative pairs, averaged.

    Keeps the loss from being dominated by negative pairs, which are far more
    numerous in a batch with many classes. ``weights`` (one per pair) make the
    two means weighted ones. Pairs lie along the last dimension of ``values``.
    """
    terms = [
        _weighted_mean(values[..., m], None if weights is None else weights[m])
        for m in (positive, ~positive)
        if m.any()
    ]
    return torch.stack(terms).mean()


def contrastive_loss(d, same, margin=1.0, weights=None):
    """Hadsell, Chopra and LeCun (2006): pull same pairs together, push different
    pairs at least ``margin`` apart."""
    values = torch.where(same, d.pow(2), F.relu(margin - d).pow(2))
    return _balanced_mean(values, same, weights)


def bce_pair_loss(d, same, weights=None):
    """Binary cross-entropy on the logit ``-d`` of "same" (Koch et al. 2015)."""
    target = same.to(d.dtype).expand_as(d)
    values = F.binary_cross_entropy_with_logits(-d, target, reduction="none")
    return _balanced_mean(values, same, weights)


def triplet_loss(D, y, margin=1.0, sample_weight=None):
    """Batch semi-hard triplet loss (Schroff et al. 2015).

    For each anchor-positive pair, the negative is the closest one that is still
    farther than the positive; when there is none, the farthest negative within the
    batch is used instead (so easy batches still give a gradient of zero, not NaN).
    ``D`` is ``(batch, batch)``, or ``(n_members, batch, batch)`` for an
    ensemble, each member mining its own triplets.
    """
    same = y[:, None] == y[None, :]
    eye = torch.eye(len(y), dtype=torch.bool, device=y.device)
    pos = same & ~eye
    if not pos.any() or same.all():
        return D.sum() * 0.0
    neg = ~same
    # Each anchor's negatives in ascending order, the other samples last; for
    # every pair (a, j), the first of a's negatives farther than d(a, j) by a
    # binary search. O(batch^2 log batch) time and O(batch^2) memory, where
    # comparing every triplet would take O(batch^3) of both.
    inf = torch.finfo(D.dtype).max
    S = torch.where(neg, D, inf).sort(dim=-1).values
    n_neg = neg.sum(dim=1)
    first = torch.searchsorted(
        S.detach().contiguous(), D.detach().contiguous(), right=True
    )
    closest_semi_hard = S.gather(-1, first.clamp(max=len(y) - 1))
    hardest = S.gather(-1, (n_neg - 1).expand(*S.shape[:-2], -1)[..., None])
    d_neg = torch.where(first < n_neg[:, None], closest_semi_hard, hardest)
    anchor, positive = pos.nonzero(as_tuple=True)
    d_ap = D[..., anchor, positive]
    d_neg = d_neg[..., anchor, positive]
    values = F.relu(d_ap - d_neg + margin)
    return _weighted_mean(
        values, None if sample_weight is None else sample_weight[anchor]
    )


def prototype_loss(emb, y, module, sample_weight=None):
    """Prototypical-network loss (Snell, Swersky and Zemel 2017) inside a batch.

    Each sample is classified by softmax over its dissimilarity to the mean
    embedding of every class in the batch (squared for the euclidean distance);
    its own class mean leaves the sample out, so no sample is compared with
    itself. Cosine distances lie in [0, 2], too narrow a range for a softmax, so
    they are scaled by 10 first. Each ensemble member has its own class means
    and its own loss; the loss is their mean.
    """
    E = module.members(emb)  # (members, batch, d)
    labels, codes = torch.unique(y, return_inverse=True)
    n_classes = len(labels)
    onehot = F.one_hot(codes, n_classes).to(E.dtype)  # (batch, classes)
    counts = onehot.sum(0)
    sums = onehot.T @ E  # (members, classes, d)
    means = sums / counts[:, None]
    logits = -module.member_pairwise(E, means, squared=True)
    # Leave-one-out mean for the sample's own class.
    own_count = (counts[codes] - 1).clamp(min=1)[:, None]
    own_mean = (sums[:, codes] - E) / own_count
    own = -module.member_rowwise(E, own_mean, squared=True)
    logits = torch.where(onehot.bool(), own[..., None], logits)
    if module.head is None and module.distance == "cosine":
        logits = 10.0 * logits
    values = F.cross_entropy(
        logits.flatten(0, 1), codes.repeat(len(E)), reduction="none"
    ).reshape(len(E), -1)
    return _weighted_mean(values, sample_weight)


def nca_loss(emb, y, module, sample_weight=None):
    """Neighbourhood components analysis (Goldberger et al. 2004) inside a batch,
    the soft nearest neighbour loss of Frosst, Papernot and Hinton (2019).

    Each sample picks another sample of the batch with probability softmax of
    minus their dissimilarity (squared for the euclidean distance); the loss is
    minus the log probability that it picks one of its own class. A sample only
    needs to be near *some* samples of its class, not near the class mean, so a
    class made of several clusters can stay several clusters. Cosine distances
    are scaled by 10, as in :func:`prototype_loss`. Ensemble members pick
    within their own embeddings; the loss is their mean.
    """
    same = y[:, None] == y[None, :]
    same.fill_diagonal_(False)
    # Every class of a balanced batch has at least 2 samples; a sample alone in
    # its class (possible in a user's batch, or in a batch of pairs) has
    # nothing to pick and no term: only samples with a mate are compared.
    has_mate = same.any(dim=1)
    if not has_mate.any():
        return emb.sum() * 0.0
    anchors = torch.nonzero(has_mate)[:, 0]
    E = module.members(emb)
    D = module.member_pairwise(E[:, anchors], E, squared=True)
    if module.head is None and module.distance == "cosine":
        D = 10.0 * D
    same = same[anchors]
    itself = torch.zeros_like(same)
    itself[torch.arange(len(anchors), device=emb.device), anchors] = True
    logits = (-D).masked_fill(itself, float("-inf"))
    log_p = torch.logsumexp(
        logits.masked_fill(~same, float("-inf")), dim=-1
    ) - torch.logsumexp(logits, dim=-1)
    weights = None if sample_weight is None else sample_weight[anchors]
    return _weighted_mean(-log_p, weights)


class InBatchLoss(nn.Module):
    """Loss over all pairs (or triplets, or prototypes) formed inside a batch of
    labelled samples.

    Parameters
    ----------
    loss : {"contrastive", "bce", "triplet", "prototype", "nca"}
    margin : float
        Margin of the contrastive and triplet losses.
    class_weight : sequence of float, default=None
        Weight of each class code: a sample's terms (a pair's: the mean of its
        two samples' weights; a triplet's: its anchor's) count that much.
    """

    def __init__(self, loss="contrastive", margin=1.0, class_weight=None):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}; got {loss!r}.")
        self.loss = loss
        self.margin = margin
        # Weight of each class code, or None for equal weights.
        self.class_weight = (
            None
            if class_weight is None
            else torch.as_tensor(class_weight, dtype=torch.float32)
        )

    def forward(self, emb, y, module):
        w = None
        if self.class_weight is not None:
            w = self.class_weight.to(emb.device)[y]
        if self.loss == "prototype":
            return prototype_loss(emb, y, module, w)
        if self.loss == "nca":
            return nca_loss(emb, y, module, w)
        E = module.members(emb)
        D = module.member_pairwise(E, E)
        if self.loss == "triplet":
            return triplet_loss(D, y, self.margin, w)
        i, j = torch.triu_indices(len(y), len(y), offset=1, device=emb.device)
        d, same = D[:, i, j], y[i] == y[j]
        pair_w = None if w is None else (w[i] + w[j]) / 2
        if self.loss == "bce":
            return bce_pair_loss(d, same, pair_w)
        return contrastive_loss(d, same, self.margin, pair_w)


class RowPairLoss(nn.Module):
    """Loss over given pairs: row ``i`` of the first half against row ``i`` of the
    second, with ``y = 1`` for same.

    ``y`` may also be rows ``(same, group_a, group_b)``: the groups that the
    same pairs imply (the connected components of the graph whose edges are
    the same pairs), one for each side. The vectors of the batch, both sides
    of every pair, then also enter :func:`nca_loss` with their groups as
    classes: a vector should lie closer to the other members of its group
    than to the vectors of other groups in the batch, which are almost always
    different. This uses many more comparisons than the pairs themselves.

    Parameters
    ----------
    loss : {"contrastive", "bce"}
    margin : float
    group_weight : float, default=0.0
        Weight of the group term (0: the pairs alone).
    """

    def __init__(self, loss="contrastive", margin=1.0, group_weight=0.0):
        super().__init__()
        if loss not in ("contrastive", "bce"):
            raise ValueError(
                f"loss must be 'contrastive' or 'bce' for pairs; got {loss!r}."
            )
        self.loss = loss
        self.margin = margin
        self.group_weight = group_weight

    def forward(self, emb, y, module):
        a, b = emb
        d = module.member_rowwise(module.members(a), module.members(b))
        same = (y[:, 0] if y.dim() == 2 else y).bool()
        if self.loss == "bce":
            loss = bce_pair_loss(d, same)
        else:
            loss = contrastive_loss(d, same, self.margin)
        if self.group_weight and y.dim() == 2:
            groups = torch.cat([y[:, 1], y[:, 2]])
            loss = loss + self.group_weight * nca_loss(
                torch.cat([a, b]), groups, module
            )
        return loss
