"""Pair, triplet, prototype and neighbourhood losses (torch only).

The pair and triplet losses take a matrix (or a vector) of *dissimilarities*
produced by :meth:`SiameseModule.member_pairwise` (or ``member_rowwise``): a
distance for the metric losses, minus the logit of "same" for the learned pair
head. The prototype and neighbourhood losses take the embeddings and the module,
which compares them the same way. Lower always means more alike.
"""

import functools

import torch
import torch.nn.functional as F
from torch import nn

from . import _networks

LOSSES = ("contrastive", "bce", "triplet", "prototype", "nca")


def _weighted_total(weights, n_values, dtype):
    """The denominator of :func:`_weighted_mean`: the total weight times the
    ``n_values`` values each weight has (one per ensemble member), kept from
    0. It depends on the weights alone."""
    total = weights.sum() * n_values
    return total.clamp(min=torch.finfo(dtype).tiny)


def _weighted_mean(values, weights=None, total=None):
    """Mean of ``values``, weighted by ``weights`` when given.

    ``weights`` broadcast against the trailing dimensions of ``values``
    (leading ones are ensemble members); a weight of 0 drops a term. With
    every weight 0 the mean is 0, not NaN, so that a batch without such
    terms needs no check on the host (a check would wait for the device).
    ``total`` is :func:`_weighted_total` of the weights, when already made.
    """
    if weights is None:
        return values.mean()
    if total is None:
        n_values = values.numel() // max(weights.numel(), 1)
        total = _weighted_total(weights, n_values, values.dtype)
    return (values * weights).sum() / total


def _sum_of_products(values, coef):
    """``sum(values * coef)``, ``coef`` the trailing dimensions of
    ``values`` (whose leading ones are ensemble members): one dot product,
    or one matrix-vector product and its sum."""
    if values.numel() == coef.numel():
        return torch.dot(values.reshape(-1), coef.reshape(-1))
    return torch.mv(values.reshape(-1, coef.numel()), coef.reshape(-1)).sum()


def _balanced_coefficients(same, weights=None, n_values=1, dtype=torch.float32):
    """The factor of each pair's term in the mean of a pair loss.

    The mean over positive pairs and the mean over negative pairs, averaged,
    is ``sum(values * coef)``, where ``coef`` is a pair's weight over the
    total weight of its kind, over the number of kinds present, over
    ``n_values`` (the values each pair has: one per ensemble member). The
    factors do not depend on the values, so they carry no gradient, and for
    an ensemble they are made once, not once per member.
    """
    if weights is None:
        weights = torch.ones(same.shape, dtype=dtype, device=same.device)
    # In ``dtype`` from the start: the clamp below takes its smallest
    # normal number, which a narrower type would round to 0 (an absent
    # kind's scale would be infinite, its factors NaN).
    weights = weights.to(dtype)
    in_same = torch.where(same, weights, 0.0).sum()
    totals = torch.stack([in_same, weights.sum() - in_same])
    kinds = (totals > 0).sum().clamp(min=1)
    # A kind without pairs has a total of 0 and weights of 0: factors of 0.
    scale = 1.0 / (totals.clamp(min=torch.finfo(dtype).tiny) * (kinds * n_values))
    return weights * torch.where(same, scale[0], scale[1])


def _pair_labels(loss, same, margin=1.0, weights=None, n_values=1, dtype=torch.float32):
    """What :func:`contrastive_loss` or :func:`bce_pair_loss` (``loss``) take
    from the labels alone: the shifts and caps, or the signs, of each pair's
    term, and its factor in the mean over positive pairs and the mean over
    negative pairs, averaged (:func:`_balanced_coefficients`; ``n_values``
    values per pair, one per ensemble member)."""
    coef = _balanced_coefficients(same, weights, n_values, dtype)
    if loss == "bce":
        # With target t, BCE(-d, t) is softplus(d) for t = 1, softplus(-d)
        # for 0: the sign of d, and its factor in the mean with that sign.
        sign = torch.where(same, 1.0, -1.0).to(dtype)
        return {"loss": loss, "coef": coef, "sign": sign, "signed_coef": sign * coef}
    # d for a same pair, min(d - margin, 0) for a different one: squared,
    # the two kinds' terms, from one subtraction and one clamp of ``d``.
    # (The margin multiplied in ``dtype``: ``torch.where`` would first round
    # it to the default type, a float64 loss's margin to float32.)
    shift = (~same).to(dtype).mul_(margin)
    cap = torch.where(same, torch.inf, 0.0).to(dtype)
    return {"loss": loss, "coef": coef, "shift": shift, "cap": cap}


def _pair_loss(d, labels):
    """The pair loss of the dissimilarities ``d`` (pairs along the trailing
    dimensions, ensemble members first) with ``labels`` from
    :func:`_pair_labels` (see :class:`_PairLoss`)."""
    if labels["loss"] == "bce":
        terms = labels["sign"], labels["signed_coef"]
    else:
        terms = labels["shift"], labels["cap"]
    return _PairLoss.apply(d, labels["coef"], *terms, labels["loss"] == "bce")


class _PairLoss(torch.autograd.Function):
    """``sum(values * coef)`` over the pairs (and members) of ``d``, with
    the gradient written out.

    Contrastive: ``values = r ** 2`` with ``r = min(d - shift, cap)``, whose
    gradient is ``2 r coef``: where the cap holds, ``r`` is 0 (a different
    pair) or the cap is infinite (a same pair), so no mask is needed. BCE,
    with ``s`` the sign of each pair: ``values = softplus(s d)``, whose
    gradient is ``s coef sigmoid(s d)``.

    Autograd would record the subtraction, clamp and square (or product and
    softplus) and the weighted sum, and run the reverse of each, a dozen
    operations: on a GPU at small batches each costs a kernel launch, more
    than its arithmetic. Here the backward pass takes two or three.
    """

    @staticmethod
    def forward(ctx, d, coef, first, second, bce):
        if bce:  # first: the sign of each pair; second: it times coef
            t = d * first
            values = F.softplus(t)
            ctx.save_for_backward(t, second)
        else:  # first: the shift; second: the cap
            r = torch.sub(d, first).clamp_(max=second)
            values, coef = r, r * coef
            ctx.save_for_backward(coef)
        ctx.bce = bce
        return _sum_of_products(values, coef)

    @staticmethod
    def backward(ctx, grad):
        if ctx.bce:
            t, signed_coef = ctx.saved_tensors
            G = torch.sigmoid(t).mul_(signed_coef).mul_(grad)
        else:
            (r_coef,) = ctx.saved_tensors
            G = r_coef * (2.0 * grad)
        return G, None, None, None, None


def contrastive_loss(d, same, margin=1.0, weights=None):
    """Hadsell, Chopra and LeCun (2006): pull same pairs together, push different
    pairs at least ``margin`` apart.

    Same pairs and different pairs count equally (the mean over each kind,
    averaged), so negative pairs, far more numerous in a batch with many
    classes, do not dominate; ``weights`` (one per pair, 0 for a pair that
    does not count) make the two means weighted ones. A kind of pair absent
    from the batch has no mean: the other one is the loss.
    """
    n_values = d.numel() // max(same.numel(), 1)
    return _pair_loss(
        d, _pair_labels("contrastive", same, margin, weights, n_values, d.dtype)
    )


def bce_pair_loss(d, same, weights=None):
    """Binary cross-entropy on the logit ``-d`` of "same" (Koch et al. 2015),
    its means over same and over different pairs averaged, as in
    :func:`contrastive_loss`."""
    n_values = d.numel() // max(same.numel(), 1)
    return _pair_loss(d, _pair_labels("bce", same, 1.0, weights, n_values, d.dtype))


# The in-batch losses below use masks of fixed shape, never boolean indexing,
# ``nonzero`` or a test of a tensor's value in Python: each of those makes the
# host wait for a GPU (and makes a step impossible to capture in a CUDA graph).


def _triplet_labels(y, n_values=1, dtype=torch.float32, sample_weight=None):
    """What :func:`triplet_loss` takes from the labels alone: the mask of
    each sample's class (its non-negatives), the number of its negatives
    and the place of the farthest one once sorted,
    and the factor of each (anchor, positive) pair in the weighted mean:
    its weight over the total (``n_values`` values per pair, one per
    ensemble member)."""
    same = y[:, None] == y[None, :]
    eye = torch.eye(len(y), dtype=torch.bool, device=y.device)
    n_neg = len(y) - same.sum(dim=1)
    # Without negatives the farthest is the largest float; the term is then 0.
    last = (n_neg - 1).clamp(min=0)
    # Every (anchor, positive) pair is a triplet, weighted by its anchor.
    weights = (same & ~eye).to(dtype)
    if sample_weight is not None:
        weights = weights * sample_weight[:, None]
    coef = (weights / _weighted_total(weights, n_values, dtype)).to(dtype)
    return dict(same=same, n_neg=n_neg, last=last, coef=coef)


def triplet_loss(D, y, margin=1.0, sample_weight=None, labels=None):
    """Batch semi-hard triplet loss (Schroff et al. 2015).

    For each anchor-positive pair, the negative is the closest one that is still
    farther than the positive; when there is none (every negative is at most as
    far as the positive), the farthest negative within the batch is used instead,
    the one whose term is smallest.
    ``D`` is ``(batch, batch)``, or ``(n_members, batch, batch)`` for an
    ensemble, each member mining its own triplets. A batch without
    anchor-positive pairs, or without negatives, has a loss of 0. ``labels``
    is :func:`_triplet_labels` of ``y``, when already made.
    """
    if labels is None:
        n_values = D.numel() // max(len(y) ** 2, 1)
        labels = _triplet_labels(y, n_values, D.dtype, sample_weight)
    return _SemiHardTriplet.apply(
        D,
        labels["same"],
        labels["n_neg"],
        labels["last"],
        labels["coef"],
        margin,
    )


class _SemiHardTriplet(torch.autograd.Function):
    """The weighted mean of the terms of :func:`triplet_loss`, with the
    gradient written out.

    Forward: each anchor's negatives in ascending order of ``D`` (``same``:
    the mask of the others, its own class; ``n_neg`` negatives, the farthest
    at place ``last``), the others last; for every pair (a, j), the first of
    a's negatives farther than d(a, j), by a binary search (O(batch^2 log
    batch) time and O(batch^2) memory, where comparing every triplet would
    take O(batch^3) of both), or the farthest; the term ``relu(d(a, p) -
    d(a, n) + margin)``, times its factor ``coef`` and summed. Backward:
    each active term's factor on its pair and minus it on its negative, one
    scatter into the matrix, where autograd would run the reverse of the
    sort, both gathers and the rest (on a GPU at small batches each
    operation costs its launch).
    """

    @staticmethod
    def forward(ctx, D, same, n_neg, last, coef, margin):
        inf = torch.finfo(D.dtype).max
        S, order = D.masked_fill(same, inf).sort(dim=-1)
        first = torch.searchsorted(S, D.contiguous(), right=True)
        found = first < n_neg[:, None]
        # The place of each pair's negative among the sorted: the closest
        # farther one, or, without one, the farthest (the largest float
        # without negatives: the term is then 0).
        place = torch.where(found, first.clamp_(max=D.shape[-1] - 1), last[:, None])
        values = (D - S.gather(-1, place)).add_(margin).relu_()
        ctx.save_for_backward(values, coef, order.gather(-1, place))
        return _sum_of_products(values, coef)

    @staticmethod
    def backward(ctx, grad):
        values, coef, negative = ctx.saved_tensors
        # An active term's factor: its value's sign (values are >= 0) is 1.
        g = torch.sign(values).mul_(coef).mul_(grad)
        dD = _scatter_add_last_(g, negative, g.neg())
        return dD, None, None, None, None, None


def _scatter_add_last_(base, index, src):
    """``base.scatter_add_(-1, index, src)``, its sums in the same order on
    every run (see :func:`_networks._adds_in_order`); in place where
    ``base`` is contiguous (on a copy otherwise: returns the result)."""
    if _networks._adds_in_order(base.device):
        return base.scatter_add_(-1, index, src)
    width = base.shape[-1]
    # (A gradient keeps the layout of its input: ``D`` may be a transpose.)
    base = base.contiguous()
    out = base.view(-1, width)
    rows = torch.arange(len(out), device=out.device)[:, None]
    index, src = index.reshape(len(out), -1), src.reshape(len(out), -1)
    out.index_put_((rows.expand_as(index), index), src, accumulate=True)
    return base


class _PrototypeLoss(torch.autograd.Function):
    """The euclidean prototype loss of :func:`prototype_loss`, with its
    gradient written out.

    Forward: the class means (``spread.mT @ E``: ``spread`` is the one-hot
    matrix of the classes over their sizes, one per member when members
    leave samples out), minus the squared distances of
    every sample to every mean (times ``slope``: the leave-one-out factor on
    the own class, 1 elsewhere; -inf for the ``absent`` classes), a
    log-softmax over the classes and the weighted sum of minus the own
    class's log-probability (``coef``: each sample's weight over the total,
    per member when members leave samples out).
    Backward: from the softmax kept by the forward pass, three matrix
    products, where autograd would run the reverse of every recorded
    operation: on a GPU at small batches each operation's launch, not its
    arithmetic, is the cost.
    """

    @staticmethod
    def forward(ctx, E, onehot, spread, slope, absent, codes, coef):
        means = spread.mT @ E  # (members, classes, d)
        sq_e = E.pow(2).sum(-1)
        sq_m = means.pow(2).sum(-1)
        # -|e|^2 - |m|^2 + 2 e.m: minus the squared distances in one kernel.
        minus_sq = torch.baddbmm(
            sq_e[..., :, None] + sq_m[..., None, :],
            E,
            means.mT,
            beta=-1.0,
            alpha=2.0,
        ).clamp_(max=0.0)
        logits = minus_sq.mul_(slope)
        if absent is not None:
            logits.masked_fill_(absent, float("-inf"))
        log_p = torch.log_softmax(logits, dim=-1)
        picked = log_p.gather(-1, codes.expand(len(E), -1)[..., None])
        ctx.save_for_backward(E, means, spread, slope, coef, onehot, log_p)
        return -_sum_of_products(picked.squeeze(-1), coef)

    @staticmethod
    def backward(ctx, grad):
        E, means, spread, slope, coef, onehot, log_p = ctx.saved_tensors
        # d loss / d logits = coef (softmax - onehot), 0 for an absent
        # class; the logits are minus the squared distances times slope.
        g = (log_p.exp() - onehot).mul_((grad * coef)[..., None]).mul_(slope)
        # -|e|^2 - |m|^2 + 2 e.m, and each mean is spread.T @ E. (The clamp
        # of the forward pass only catches rounding: not differentiated.)
        dE = torch.baddbmm(E * g.sum(-1, keepdim=True), g, means, beta=-2.0, alpha=2.0)
        dM = torch.baddbmm(means * g.sum(-2)[..., None], g.mT, E, beta=-2.0, alpha=2.0)
        return dE.add_(spread @ dM), None, None, None, None, None, None


def _prototype_labels(
    y,
    module,
    n_members,
    dtype,
    sample_weight=None,
    n_classes=None,
    renumber=None,
    left_out=None,
):
    """What :func:`prototype_loss` takes from the labels alone: each sample's
    column (its class's), the one-hot matrix of the classes and the columns
    of absent codes; with the euclidean distance and no head, the factors of
    :class:`_PrototypeLoss`, else the classes' sizes and the weights with
    their total (``n_members`` values per sample).

    ``left_out``: the ensemble member that leaves each sample out (an index
    in ``0 .. n_members - 1``), or None. A member then neither scores a
    sample it leaves out nor counts it in its class means: every term is
    made per member, ``(n_members, batch, ...)``.
    """
    if renumber is None:
        renumber = not _networks._host_reads_are_free(y.device)
    if n_classes is not None and n_classes > len(y) and renumber:
        present = torch.zeros(n_classes, dtype=y.dtype, device=y.device)
        y = (present.index_fill_(0, y, 1).cumsum(0) - 1)[y]
        n_classes = len(y)
    every_code = n_classes is not None and n_classes <= len(y)
    if every_code:
        codes, classes = y, torch.arange(n_classes, device=y.device)
    else:
        classes, codes = torch.unique(y, return_inverse=True)
    in_class = y[:, None] == classes[None, :]  # (batch, classes)
    onehot = in_class.to(dtype)
    kept = None
    if left_out is not None:
        # Each member's own samples: (members, batch), and its one-hot matrix.
        members = torch.arange(n_members, device=y.device)
        kept = (members[:, None] != left_out[None, :]).to(dtype)
        onehot = kept[..., None] * onehot
    counts = onehot.sum(-2)  # (classes,), or (members, classes)
    absent = None
    if every_code or kept is not None:
        absent = counts == 0  # columns of absent codes
        if kept is not None:
            # For the samples each member keeps (a sample left out may be
            # alone in its class: its own column stays finite, and its term,
            # of weight 0, a number).
            absent = absent[..., None, :] & kept.bool()[..., None]
    # A sample alone in its class has no term.
    own_count = counts[..., codes]  # (batch,), or (members, batch)
    weights = (own_count > 1).to(dtype)
    if kept is not None:
        weights = weights * kept
    # Each weight counts once per member (it has n_members values), or, made
    # per member, once.
    n_values = n_members if kept is None else 1
    if sample_weight is not None:
        weights = weights * sample_weight
    labels = dict(codes=codes, in_class=in_class, onehot=onehot, absent=absent)
    if module.head is None and module.distance == "euclidean":
        # x - (n m - x) / (n - 1) is n / (n - 1) (x - m): the squared
        # distance to the mean of the others is (n / (n - 1))^2 times the one
        # to the whole class's mean, so one matrix of distances serves both.
        scale = (counts / (counts - 1).clamp(min=1)).pow(2)
        labels["slope"] = torch.where(in_class, scale[..., None, :], 1.0)
        # The mean over members and samples, weighted.
        labels["coef"] = weights / _weighted_total(weights, n_values, dtype)
        # A mean is spread.mT @ E.
        labels["spread"] = onehot / counts.clamp(min=1)[..., None, :]
        return labels
    labels["sizes"] = counts.clamp(min=1)[..., None]
    labels["others"] = (own_count - 1).clamp(min=1)[..., None]  # own mean's
    labels["repeated"] = codes.repeat(n_members)
    labels["weights"] = weights
    labels["total"] = _weighted_total(weights, n_values, dtype)
    return labels


def prototype_loss(
    emb,
    y,
    module,
    sample_weight=None,
    n_classes=None,
    renumber=None,
    labels=None,
    left_out=None,
):
    """Prototypical-network loss (Snell, Swersky and Zemel 2017) inside a batch.

    Each sample is classified by softmax over its dissimilarity to the mean
    embedding of every class in the batch (squared for the euclidean distance);
    its own class mean leaves the sample out, so no sample is compared with
    itself. A sample alone in its class has no such mean and no term (a
    class-balanced batch has none). Cosine distances lie in [0, 2], too
    narrow a range for a softmax, so they are scaled by 10 first. Each
    ensemble member has its own class means and its own loss; the loss is
    their mean.

    The classes of the batch are found by ``torch.unique``, which makes the
    host wait for a GPU. With ``n_classes``, the number of class codes ``y``
    is drawn from (``0 .. n_classes - 1``), every code has a column instead,
    those absent from the batch masked out: no wait, and the same loss. With
    more codes than samples in the batch, the columns would cost more than
    the wait, but a batch holds at most as many classes as samples: with
    ``renumber``, the classes present are numbered ``0, 1, ...`` on the
    device (in the order of their codes) and each number up to the batch
    size has a column: still no wait, and the same loss. That costs more
    than ``unique`` where there is no wait to save, so by default
    (``renumber=None``) it is done off a CPU only. ``labels`` is
    :func:`_prototype_labels` of ``y``, when already made.

    ``left_out`` (one int per sample, or None): the ensemble member that
    leaves each sample out, as if it had never seen it. That member neither
    scores the sample nor counts it in its class means, so its loss, and
    its gradient, owe nothing to that sample: the out-of-bag calibration of
    :class:`~sksiamese.SiameseClassifier` scores each training sample with
    the member that left it out.
    """
    E = module.members(emb)  # (members, batch, d)
    if labels is None:
        labels = _prototype_labels(
            y, module, len(E), E.dtype, sample_weight, n_classes, renumber, left_out
        )
    if module.head is None and module.distance == "euclidean":
        return _PrototypeLoss.apply(
            E,
            labels["onehot"],
            labels["spread"],
            labels["slope"],
            labels["absent"],
            labels["codes"],
            labels["coef"],
        )
    sums = labels["onehot"].mT @ E  # (members, classes, d)
    means = sums / labels["sizes"]
    logits = -module.member_pairwise(E, means, squared=True)
    own_mean = (sums[:, labels["codes"]] - E) / labels["others"]
    own = -module.member_rowwise(E, own_mean, squared=True)
    logits = torch.where(labels["in_class"], own[..., None], logits)
    if module.head is None and module.distance == "cosine":
        logits = 10.0 * logits
    if labels["absent"] is not None:
        logits = logits.masked_fill(labels["absent"], float("-inf"))
    values = F.cross_entropy(
        logits.flatten(0, 1), labels["repeated"], reduction="none"
    ).reshape(len(E), -1)
    return _weighted_mean(values, labels["weights"], labels["total"])


class _LogPickProbability(torch.autograd.Function):
    """Row by row, the log of the probability that softmax(-D), over the
    entries not ``excluded``, falls on the entries not ``unpicked`` (a
    subset of those).

    The same as the difference of two ``logsumexp``, each over the entries
    its own maximum keeps in range, but the probabilities the forward pass
    computes are kept as the gradient (the two softmaxes' difference), so
    the backward pass is one product instead of recomputing both exponentials.
    """

    @staticmethod
    def forward(ctx, D, excluded, unpicked):
        logits = (-D).masked_fill_(excluded, float("-inf"))
        top = logits.amax(dim=-1, keepdim=True)
        p_all = (logits - top).exp_()
        total = p_all.sum(dim=-1, keepdim=True)
        kept = logits.masked_fill_(unpicked, float("-inf"))
        top_kept = kept.amax(dim=-1, keepdim=True)
        p_picks = kept.sub_(top_kept).exp_()
        share = p_picks.sum(dim=-1, keepdim=True)
        log_p = (top_kept + share.log()) - (top + total.log())
        # d log_p / d D = softmax over all - softmax over the picks.
        ctx.save_for_backward(p_all.div_(total).sub_(p_picks.div_(share)))
        return log_p.squeeze(-1)

    @staticmethod
    def backward(ctx, grad):
        (slope,) = ctx.saved_tensors
        return slope * grad[..., None], None, None


def _nca_labels(
    y, n_members=1, dtype=torch.float32, sample_weight=None, only_mates=False
):
    """What :func:`nca_loss` takes from the labels alone: the samples each
    sample may pick and those it should, and minus each one's factor in the
    weighted mean (its weight over the total, ``n_members`` values per
    sample); with ``only_mates``, the rows of the samples with a mate (the
    others' rows left out)."""
    eye = torch.eye(len(y), dtype=torch.bool, device=y.device)
    same = (y[:, None] == y[None, :]) & ~eye
    has_mate = same.any(dim=1)
    rows = None
    if only_mates:
        rows = torch.nonzero(has_mate)[:, 0]
        eye, same, has_mate = eye[rows], same[rows], has_mate[rows]
        if sample_weight is not None:
            sample_weight = sample_weight[rows]
    # A sample without a mate picks from its whole row: log p = 0, no term.
    unpicked = ~(same | ~has_mate[:, None])
    weights = has_mate.to(dtype)
    if sample_weight is not None:
        weights = weights * sample_weight
    neg_coef = (weights / -_weighted_total(weights, n_members, dtype)).to(dtype)
    return dict(rows=rows, eye=eye, unpicked=unpicked, neg_coef=neg_coef)


def nca_loss(emb, y, module, sample_weight=None, only_mates=False, labels=None):
    """Neighbourhood components analysis (Goldberger et al. 2004) inside a batch,
    the soft nearest neighbour loss of Frosst, Papernot and Hinton (2019).

    Each sample picks another sample of the batch with probability softmax of
    minus their dissimilarity (squared for the euclidean distance); the loss is
    minus the log probability that it picks one of its own class. A sample only
    needs to be near *some* samples of its class, not near the class mean, so a
    class made of several clusters can stay several clusters. Cosine distances
    are scaled by 10, as in :func:`prototype_loss`. Ensemble members pick
    within their own embeddings; the loss is their mean.

    Every class of a balanced batch has at least 2 samples; a sample alone in
    its class (possible in a user's batch, or in a batch of pairs) has nothing
    to pick and no term. ``only_mates=True`` leaves such samples' rows out of
    the computation instead of computing and then ignoring them: less work
    when many samples are alone (a batch of pairs), but their number is read
    on the host, a wait for a GPU. ``labels`` is :func:`_nca_labels` of
    ``y``, when already made.
    """
    if len(y) < 2:  # no other sample to pick (a row of -inf gives NaN)
        return emb.sum() * 0.0
    E = module.members(emb)
    if labels is None:
        labels = _nca_labels(y, len(E), E.dtype, sample_weight, only_mates)
    if labels["rows"] is not None:
        D = module.member_pairwise(E[:, labels["rows"]], E, squared=True)
    else:
        D = module.member_pairwise(E, E, squared=True)
    if module.head is None and module.distance == "cosine":
        D = 10.0 * D
    log_p = _LogPickProbability.apply(D, labels["eye"], labels["unpicked"])
    # Minus the weighted mean of log p, from one product: the sign is in
    # the factors (an operation less, forward and backward).
    return _sum_of_products(log_p, labels["neg_coef"])


def _in_float32(forward):
    """A loss's ``forward(self, emb, y, module)`` run outside autocast, on
    float32 embeddings (``emb`` a tensor or a pair of them), whatever the
    encoder ran in: the estimators call the loss outside autocast, a
    hand-written loop may not, and the loss's own backward passes expect the
    types of their forward passes."""

    @functools.wraps(forward)
    def in_float32(self, emb, y, module):
        pair = isinstance(emb, (tuple, list))
        kind = (emb[0] if pair else emb).device.type
        if not torch.is_autocast_enabled(kind):
            return forward(self, emb, y, module)
        with torch.autocast(kind, enabled=False):
            emb = tuple(e.float() for e in emb) if pair else emb.float()
            return forward(self, emb, y, module)

    return in_float32


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
    n_classes : int, default=None
        Number of class codes the labels are drawn from (``0 .. n_classes -
        1``; by default the length of ``class_weight``, if given). It spares
        the prototype loss a wait for a GPU at every step (see
        :func:`prototype_loss`).

    The labels ``y`` are class codes, or for the prototype loss rows of
    ``(class code, member)``: the ensemble member that leaves each sample
    out (see :func:`prototype_loss`).
    """

    def __init__(
        self, loss="contrastive", margin=1.0, class_weight=None, n_classes=None
    ):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}; got {loss!r}.")
        self.loss = loss
        self.margin = margin
        # Weight of each class code, or None for equal weights. A buffer
        # moves to the training device with the criterion, once: copying it
        # from the host at every step would make the host wait for a GPU.
        self.register_buffer("class_weight", None, persistent=False)
        self.set_classes(n_classes, class_weight)

    def set_classes(self, n_classes=None, class_weight=None, device=None):
        """Take the class codes ``0 .. n_classes - 1`` with weights
        ``class_weight`` (None: equal; ``n_classes`` defaults to its length),
        the weights placed on ``device``: at construction, and for the new
        classes of :meth:`~sksiamese.SiameseClassifier.fit_references`.
        """
        if n_classes is None and class_weight is not None:
            n_classes = len(class_weight)
        self.n_classes = n_classes
        self.class_weight = (
            None
            if class_weight is None
            else torch.as_tensor(class_weight, dtype=torch.float32, device=device)
        )

    def __getstate__(self):
        # The labels' terms of the last batch are not part of the loss.
        state = self.__dict__.copy()
        state.pop("_last_labels", None)
        return state

    @_in_float32
    def forward(self, emb, y, module):
        E = module.members(emb)
        labels = self._labels(y, E, module)
        if y.dim() == 2:
            y = y[:, 0]
        if self.loss == "prototype":
            return prototype_loss(emb, y, module, labels=labels)
        if self.loss == "nca":
            return nca_loss(emb, y, module, labels=labels)
        D = module.member_pairwise(E, E)
        if self.loss == "triplet":
            return triplet_loss(D, y, self.margin, labels=labels)
        return _pair_loss(D, labels)

    def _labels(self, y, E, module):
        """The terms of the loss that depend on the labels ``y`` alone, for
        embeddings ``E`` (members first).

        Made again only when ``y`` (or the class weights) is not the tensor
        of the last call, or has been changed in place since, or the
        embeddings' type, device or members differ: a class-balanced batch
        sampler whose batches hold every class yields one tensor of labels
        for all of them (:class:`~sksiamese._training.BalancedBatchIterator`),
        so these terms are made once, not at every step. On a GPU at small
        batches, each of their dozen or two operations costs a launch.
        """
        weights = self.class_weight
        if (
            torch.compiler.is_compiling()
            or y.is_inference()
            or (weights is not None and weights.is_inference())
        ):
            return self._make_labels(y, E, module)
        key = (
            self.loss,
            y._version,
            None if weights is None else weights._version,
            E.dtype,
            E.device,
            len(E),
            module.head is None,
            module.distance,
            self.margin,
            self.n_classes,
            torch.is_inference_mode_enabled(),
        )
        last = self.__dict__.get("_last_labels")
        if last is not None and last[0] is y and last[1] is weights and last[2] == key:
            return last[3]
        labels = self._make_labels(y, E, module)
        self.__dict__["_last_labels"] = (y, weights, key, labels)
        return labels

    def _make_labels(self, y, E, module):
        """The terms of :meth:`_labels`, made (per loss: ``_*_labels``)."""
        left_out = None
        if y.dim() == 2:
            if self.loss != "prototype":
                raise ValueError(
                    "Members leave samples out (labels of two columns) with "
                    f"the prototype loss only, not {self.loss!r}."
                )
            y, left_out = y[:, 0], y[:, 1]
        w = None
        if self.class_weight is not None:
            w = self.class_weight.to(E.device)[y]
        if self.loss == "prototype":
            return _prototype_labels(
                y, module, len(E), E.dtype, w, self.n_classes, left_out=left_out
            )
        if self.loss == "nca":
            return _nca_labels(y, len(E), E.dtype, w) if len(y) >= 2 else None
        if self.loss == "triplet":
            return _triplet_labels(y, len(E), E.dtype, w)
        # Every pair of distinct samples, both ways round (as many terms as
        # the pairs above the diagonal, twice over: the same means).
        # A pair's weight is the sum of its samples' (the mean, but only
        # relative weights count); a sample with itself is no pair.
        same = y[:, None] == y[None, :]
        if w is None:
            pair_w = torch.ones((len(y), len(y)), dtype=E.dtype, device=E.device)
        else:
            pair_w = (w[:, None] + w[None, :]).to(E.dtype)
        pair_w.fill_diagonal_(0.0)
        return _pair_labels(self.loss, same, self.margin, pair_w, len(E), E.dtype)


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

    @_in_float32
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
            # Many vectors of a batch of pairs have no other member of their
            # group in it: on a CPU, their rows are not worth computing; on a
            # GPU, waiting to learn which ones costs more than the rows.
            loss = loss + self.group_weight * nca_loss(
                torch.cat([a, b]),
                groups,
                module,
                only_mates=_networks._host_reads_are_free(a.device),
            )
        return loss
