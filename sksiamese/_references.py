"""References: which embedded training samples a classifier keeps, how a
query is scored against them, and the samples ``partial_fit`` keeps.

Plain functions on arrays and a trained twin module; nothing here trains or
calibrates.
"""

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import torch

from . import _networks

# Upper bound on the number of float32 values in one block of a
# query x reference dissimilarity computation (64 MB).
_BLOCK_VALUES = 2**24

# Rows per centre that k-means sees at most: larger classes are subsampled.
_KMEANS_ROWS = 20

# Classes of at most this many references are scored in groups (see
# class_dissimilarity), by device type; a device not listed (every one, by
# default): any that fit a block. Tests set "cpu" to 0 to score class by class.
_GROUPED_REFS = {}

# On a CPU, blocks sized to stay in the caches (4 MiB in float64) through the
# conversion, scaling and norms of a block of queries and its products with
# the references, instead of the bounds of _BLOCK_VALUES: references in the
# product of one group (classes of as many references scored together), and
# values (rows x the wider of the embedding and a product) of one block of
# queries, by device type; other devices: the bounds of _BLOCK_VALUES.
# 2 CPU threads, against class by class in blocks of up to 84,000 queries
# (groups only for classes of up to 10 references), two runs: 1.45x as fast
# for 2 classes of 100 references (100,000 queries, the default ensemble of
# 8), 1.05-1.2x with one network; 1.1-1.2x (8) and 0.95-1.0x (1) for 10
# classes of 100; 1.65-1.85x for 100 classes of 20 (8); 1.05-1.1x for 100
# of 100 (8); 1.5-1.65x for 968 classes of 10 (8 members, or one of 64).
_GROUP_REFS = {"cpu": 512}
_QUERY_VALUES = {"cpu": 2**19}

# Largest fraction of a class that its neighbourhood in class_dissimilarity
# covers when another class has very few references.
_MAX_NEIGHBOURHOOD = 0.25


@dataclass
class References:
    """Embedded references: ``embeddings`` (one row each), their class
    ``codes``, and the ``weights``, the training samples each stands for."""

    embeddings: np.ndarray
    codes: np.ndarray
    weights: np.ndarray | None = None

    def dissimilarity(self, net, Q, n_classes, n_neighbors):
        """:func:`class_dissimilarity` of the embedded queries ``Q`` with the
        module of the skorch ``net``, on its device."""
        return class_dissimilarity(
            net.module_,
            Q,
            self.embeddings,
            self.codes,
            n_classes,
            n_neighbors,
            self.weights,
            device=net.device,
        )


def select_references(E, codes, references, rng, rows=None, *, device="cpu"):
    """The :class:`References` kept from the embedded samples ``E`` of class
    ``codes``, as the ``references`` parameter says: ``"all"``, ``"prototypes"``
    (one mean per class) or an int ``k`` (at most ``k`` k-means centres per
    class, see :func:`class_centres`).

    With ``rows`` (indices), from those rows of ``E`` and ``codes`` only,
    without copying them: a class's rows are gathered one class at a time,
    and only the subsample that k-means sees. ``E`` is an array, or indexed
    like one and embedding rows as they are read, with ``embed_rows(rows)``
    to embed many at once (:class:`~sksiamese._training.EmbeddedRows`).
    The k-means runs on ``device`` (that of the net which embedded ``E``).
    """
    if rows is not None:
        codes = codes[rows]
    if references == "all":
        return References(
            np.asarray(E) if rows is None else E[rows], codes, np.ones(len(codes))
        )
    if rows is None:
        rows = np.arange(len(codes))
    present = np.unique(codes)
    members = [rows[codes == c] for c in present]
    if hasattr(E, "embed_rows"):
        # The rows read whole (every row of a class for its mean, or of a
        # class small enough for k-means to see all of it), embedded at once,
        # not one class at a time.
        whole = [
            m
            for m in members
            if references == "prototypes" or len(m) <= _KMEANS_ROWS * references
        ]
        if whole:
            E.embed_rows(np.concatenate(whole))
    if references == "prototypes":
        kept = [(E[m].mean(0, keepdims=True), np.array([len(m)])) for m in members]
    else:
        kept = [class_centres(E, references, rng, m, device=device) for m in members]
    return _stacked(present, kept)


def _stacked(present, kept):
    """The :class:`References` of the classes ``present``, each with its
    ``(embeddings, weights)`` in ``kept``."""
    r_codes = np.concatenate(
        [np.full(len(r), c) for c, (r, _) in zip(present, kept, strict=True)]
    )
    R = np.concatenate([r for r, _ in kept]).astype(np.float32)
    return References(
        R, r_codes, np.concatenate([w for _, w in kept]).astype(np.float64)
    )


def member_references(E, codes, left_out, n_members, references, rng, *, device="cpu"):
    """The :class:`References` of each ensemble member, each from the rows
    it trained on (those ``left_out`` does not give to it), in its own
    embedding (its columns of ``E``, the members' embeddings side by side),
    as :func:`select_references` would choose them.

    With an int ``references``, a class of more trained rows than that is
    clustered once for all members: k-means (on ``device``) on the whole
    embeddings of its rows (a subsample of large classes, as in
    :func:`class_centres`), and each member's centres are the means of its
    own embeddings of the rows it trained on in each cluster, weighted by
    the training rows each stands for. One k-means per class instead of one
    per member and class; the rows a member left out place no centre of
    its own.
    """
    if isinstance(references, str):
        return [
            select_references(
                _MemberColumns(E, m, n_members),
                codes,
                references,
                rng,
                np.flatnonzero(left_out != m),
                device=device,
            )
            for m in range(n_members)
        ]
    present = [[] for _ in range(n_members)]
    kept = [[] for _ in range(n_members)]
    for c in np.unique(codes):
        rows = np.flatnonzero(codes == c)
        shared = None
        for m in range(n_members):
            mine = rows[left_out[rows] != m]
            if not len(mine):
                continue
            if len(mine) <= references:
                # Its rows, each placed once (no k-means).
                own = class_centres(
                    _MemberColumns(E, m, n_members), references, rng, mine
                )
            else:
                if shared is None:
                    shared = _shared_clusters(E, rows, references, rng, device)
                own = _member_means(shared, left_out, m, n_members, len(mine))
            present[m].append(c)
            kept[m].append(own)
    return [_stacked(p, k) for p, k in zip(present, kept, strict=True)]


def _shared_clusters(E, rows, k, rng, device):
    """The rows of one class that k-means sees (a subsample of a large
    class), their whole embeddings and their clusters: at most ``k``, by
    k-means on the distinct rows (each distinct row its own cluster when
    there are at most ``k``)."""
    if len(rows) > _KMEANS_ROWS * k:
        rows = rows[rng.choice(len(rows), _KMEANS_ROWS * k, replace=False)]
    X = np.asarray(E[rows])
    distinct, _, inverse = _distinct_rows(X)
    if len(distinct) <= k:
        return rows, X, inverse
    seed = rng.randint(2**31 - 1)
    _, labels = kmeans(distinct.astype(np.float64), k, seed, device=device)
    return rows, X, labels[inverse]


def _member_means(shared, left_out, m, n_members, n_trained):
    """Member ``m``'s centres of the ``shared`` clusters (the means of its
    embeddings of the rows it trained on in each) and the training rows each
    stands for (its ``n_trained`` rows of the class in all)."""
    rows, X, labels = shared
    mine = left_out[rows] != m
    width = X.shape[1] // n_members
    own = X[mine, m * width : (m + 1) * width].astype(np.float64)
    labels = labels[mine]
    n_clusters = labels.max() + 1
    sizes = np.bincount(labels, minlength=n_clusters)
    sums = np.zeros((n_clusters, width))
    np.add.at(sums, labels, own)
    used = sizes > 0
    centres = sums[used] / sizes[used, None]
    return centres.astype(np.float32), sizes[used] * (n_trained / mine.sum())


class _MemberColumns:
    """Member ``m`` of ``n_members``' embeddings of the rows of ``E`` (an
    array, or :class:`~sksiamese._training.EmbeddedRows`, of the members'
    embeddings side by side), indexed like an array."""

    def __init__(self, E, m, n_members):
        self._E, self._m, self._n_members = E, m, n_members

    def __len__(self):
        return len(self._E)

    def __getitem__(self, index):
        e = self._E[index]
        width = e.shape[-1] // self._n_members
        return np.ascontiguousarray(e[..., self._m * width : (self._m + 1) * width])

    def embed_rows(self, rows):
        if hasattr(self._E, "embed_rows"):
            self._E.embed_rows(rows)


def class_centres(E, k, rng, rows=None, *, device="cpu"):
    """At most ``k`` centres of the rows ``E`` (or of its rows ``rows``), and
    how many of the rows each stands for (counted in all of them when
    k-means saw a subsample); the k-means runs on ``device``."""
    n = len(E) if rows is None else len(rows)
    # k-means on a subsample is as good as on everything for k centres and
    # keeps this step cheap on hundreds of thousands of samples.
    if n > _KMEANS_ROWS * k:
        pick = rng.choice(n, _KMEANS_ROWS * k, replace=False)
        rows = pick if rows is None else rows[pick]
    if rows is not None:
        E = E[rows]
    E, counts, _ = _distinct_rows(E)
    counts = counts * (n / counts.sum())
    if len(E) <= k:
        return E, counts
    seed = rng.randint(2**31 - 1)
    centres, labels = kmeans(E.astype(np.float64), k, seed, device=device)
    held = np.bincount(labels, weights=counts, minlength=k)
    keep = held > 0
    return centres[keep].astype(np.float32), held[keep]


def _distinct_rows(E):
    """The distinct rows of ``E``, how many times each occurs and, for each
    row of ``E``, the index of its distinct row.

    Repeated rows (e.g. oversampled) are placed once but keep their count.
    Where rows of equal first values are all repeats of one row (distinct
    rows all differ there), the first row of each run of the rows sorted by
    that value gives np.unique's rows in its order: one sort instead of its
    sort of whole rows (most of :func:`class_centres`' time for small
    classes: 600 rows of 256 values, 100 of them distinct, 0.2 instead of
    5.3 ms; 2,000 rows, 300 distinct, k-means included, 9.4 instead of 22.5
    ms).
    """
    order = np.argsort(E[:, 0], kind="stable")
    E = E[order]
    tie = E[1:, 0] == E[:-1, 0]
    repeat = tie.copy()
    repeat[tie] = (E[1:][tie] == E[:-1][tie]).all(1)
    if (repeat == tie).all():
        start = np.flatnonzero(np.r_[True, ~tie])
        inverse = np.empty(len(E), dtype=np.intp)
        inverse[order] = np.cumsum(np.r_[True, ~tie]) - 1
        return E[start], np.diff(np.r_[start, len(E)]), inverse
    distinct, inverse, counts = np.unique(
        E, axis=0, return_inverse=True, return_counts=True
    )
    unsorted = np.empty(len(E), dtype=np.intp)
    unsorted[order] = inverse.reshape(-1)
    return distinct, counts, unsorted


@torch.inference_mode()
def kmeans(X, k, seed, *, device="cpu", max_iter=50, tol=1e-4):
    """Centres and labels (numpy arrays) of ``k`` clusters of the distinct
    float64 rows ``X``, computed with torch on ``device``.

    The random draws and the steps are those of scikit-learn's
    ``kmeans_plusplus(X, k, random_state=seed, n_local_trials=1)`` followed
    by ``KMeans(k, init=..., n_init=1, max_iter=max_iter, tol=tol).fit(X)``:
    the same labels, and centres equal to rounding. Plain k-means++ seeding
    (one candidate per centre instead of scikit-learn's 2 + log(k)): the
    seeding was most of the time, and the Lloyd iterations that follow end
    within 2% of the same inertia. In torch so that on a GPU the seeding and
    the iterations run where the embeddings are (scikit-learn's run on the
    host, about 0.1 s per class of 2,000 rows of 256 values on a 16-core
    machine).
    """
    n = len(X)
    rs = np.random.RandomState(seed)
    first = rs.choice(n, p=np.ones(n) / n)
    X = torch.as_tensor(X, device=device, dtype=torch.float64)
    # The draws of the other centres, all at once, as scikit-learn's one by one.
    draws = rs.uniform(size=k - 1).tolist()
    sq = (X * X).sum(1)
    picked = [torch.as_tensor([first], device=device)]
    closest = torch.addmv(sq + sq[first], X, X[first], alpha=-2).clamp_(min=0)
    # No value comes back to the host while seeding: each row is drawn on
    # the device, with probability proportional to ``closest`` (a draw
    # below 1 times the last cumulative sum never falls beyond it).
    for u in draws:
        cumulative = torch.cumsum(closest, 0)
        pick = torch.searchsorted(cumulative, cumulative[-1:] * u)
        picked.append(pick)
        # (index_select: a 0-d index tensor would be read back to the host.)
        d = torch.addmv(sq + sq[pick], X, X.index_select(0, pick)[0], alpha=-2)
        # (closest is never negative: the same as clipping d at 0 first.)
        closest = torch.minimum(closest, d).clamp_(min=0)
    picked = torch.cat(picked)
    return lloyd(X, X[picked], max_iter=max_iter, tol=tol)


def _add_rows(sums, labels, rows):
    """Add each row of ``rows`` to the row ``labels[i]`` of ``sums``, in
    place, in the same order on every run (see
    :func:`_networks._adds_in_order`)."""
    if _networks._adds_in_order(sums.device):
        return sums.index_add_(0, labels, rows)
    return sums.index_put_((labels,), rows, accumulate=True)


@torch.inference_mode()
def lloyd(X, centres, *, max_iter=50, tol=1e-4):
    """Centres and labels (numpy arrays) of Lloyd's k-means iterations from
    the initial ``centres`` over the rows ``X`` (float64 tensors on one
    device), as scikit-learn's ``KMeans(init=centres, n_init=1)`` computes
    them: at most ``max_iter`` iterations, ending when no label changes or
    the centres move less (in squares summed) than ``tol`` times the mean
    variance of the features; a cluster left empty takes one of the rows
    farthest from their centres. One wait for the device per iteration (two
    when a cluster is empty).
    """
    n, k, device = len(X), len(centres), X.device
    # Lloyd iterations on centred rows (as scikit-learn, for its rounding).
    threshold = float(X.var(0, correction=0).mean()) * tol
    mean = X.mean(0)
    X = X - mean
    centres = centres - mean
    old = torch.full((n,), -1, dtype=torch.long, device=device)
    converged = False
    for _ in range(max_iter):
        labels = ((centres * centres).sum(1) - 2 * (X @ centres.T)).argmin(1)
        sums = _add_rows(torch.zeros_like(centres), labels, X)
        sizes = torch.bincount(labels, minlength=k).to(X.dtype)
        new = sums / sizes[:, None]
        # One read from the device: the counts and the shift (which is only
        # used when no cluster is empty; otherwise made again below).
        n_empty, changed, shift = torch.stack(
            [(sizes == 0).sum(), (labels != old).sum(), ((new - centres) ** 2).sum()]
        ).tolist()
        if n_empty:
            # Each empty cluster takes one of the rows farthest from their
            # centres, which leaves its cluster.
            n_empty = int(n_empty)
            empty = torch.nonzero(sizes == 0)[:, 0]
            far = ((X - centres[labels]) ** 2).sum(1).topk(n_empty).indices
            _add_rows(sums, labels[far], -X[far])
            _add_rows(sizes, labels[far], -torch.ones_like(far, dtype=X.dtype))
            sums[empty], sizes[empty] = X[far], 1.0
            new = sums / sizes.clamp(min=1)[:, None]
            # A cluster whose only row moved is left empty: as scikit-learn,
            # at the centre of the largest cluster (not 0 / 0 = NaN).
            new = torch.where((sizes == 0)[:, None], new[sizes.argmax()], new)
            shift = float(((new - centres) ** 2).sum())
        centres = new
        if not changed:
            converged = True
            break
        if shift <= threshold:
            break
        old = labels
    if not converged:
        labels = ((centres * centres).sum(1) - 2 * (X @ centres.T)).argmin(1)
    return (centres + mean).cpu().numpy(), labels.cpu().numpy()


@torch.inference_mode()
def class_dissimilarity(
    module, Q, R, r_codes, n_classes, n_neighbors, r_weights=None, *, device="cpu"
):
    """Mean dissimilarity of each query to its closest references of each
    class, over neighbourhoods that hold the same fraction of every class.

    The class with the fewest references is judged on its ``n_neighbors``
    closest ones; every other class on its closest references that stand
    for the same fraction of its training samples (at most a quarter of
    them, and never fewer than ``n_neighbors`` references). The mean is
    weighted by the samples each reference stands for. Among classes of
    equal size whose references are single samples this is the plain mean
    over the ``n_neighbors`` closest references; across classes of
    different sizes it compares densities rather than counts (a balanced
    k-nearest-neighbour rule), so that a large class does not win a query
    merely for having more references near it.

    Parameters
    ----------
    module : SiameseModule
        The trained twin module, whose ``smallest`` gives the dissimilarities.
    Q : ndarray of shape (n_queries, embedding_dim)
    R : ndarray of shape (n_references, embedding_dim)
    r_codes : ndarray of shape (n_references,)
        Class code of each reference, in ``range(n_classes)``.
    n_classes : int
    n_neighbors : int
    r_weights : ndarray of shape (n_references,), default=None
        Training samples each reference stands for (a k-means centre, its
        cluster); None: one each.
    device : str, default="cpu"
        Where to compute, the device of ``module``.

    Returns
    -------
    S : ndarray of shape (n_queries, n_classes)

    Work is done in blocks of queries and references so that memory stays
    bounded however many queries and references there are.
    """
    width = Q.shape[1] if module.head is not None else 1
    # Distances in float64: a query's scores then depend on which other
    # queries share its block (how many, which blocks) only by float64's
    # rounding. On a CPU that is about half the time of predict_proba
    # with the default ensemble and 2 classes (the encoder the other half).
    order = np.argsort(r_codes, kind="stable")
    R = torch.as_tensor(R[order], device=device, dtype=torch.float64)
    if r_weights is None:
        W = np.ones(len(order))
    else:
        W = np.asarray(r_weights, dtype=np.float64)[order]
    sorted_codes = r_codes[order]
    bounds = np.searchsorted(sorted_codes, np.arange(n_classes + 1))
    counts = np.diff(bounds)
    # Samples each class's neighbourhood holds: the same share of every class.
    share = min(n_neighbors / counts[counts > 0].min(), _MAX_NEIGHBOURHOOD)
    want = share * np.bincount(sorted_codes, weights=W, minlength=n_classes)
    # A neighbourhood holds ``want`` once its weights reach this (sums of
    # weights may round just below it).
    enough = want * (1 - 1e-9)
    # References to fetch per query: enough to hold ``want`` samples if
    # they weigh what the class's references weigh on average (twice over);
    # queries whose closest references are lighter than that fetch again,
    # enough even if they were the lightest of the class.
    guess = np.minimum(
        counts, np.maximum(n_neighbors, np.ceil(2 * share * counts))
    ).astype(int)
    most = guess.copy()
    for c, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        lightest = np.cumsum(np.sort(W[lo:hi]))
        needed = np.searchsorted(lightest, enough[c]) + 1
        most[c] = min(hi - lo, max(guess[c], needed))
    W = torch.as_tensor(W, device=device)
    ref_block = max(1, min(len(R), _BLOCK_VALUES // (256 * width)))
    q_block = max(1, _BLOCK_VALUES // (ref_block * width))
    # Kept distances, weights and indices stay within the block budget too.
    q_block = max(1, min(q_block, _BLOCK_VALUES // (4 * max(1, most.max()))))

    # The references made ready for comparison once, each query block once
    # (not again for every class).
    R = module.comparable(R)

    def rows(prepared, index):
        return tuple(None if v is None else v[index] for v in prepared)

    def closest(q, lo, hi, fetch):
        """Distances to the ``fetch`` closest references of ``R[lo:hi]``,
        ascending, and their weights (``q`` from ``module.comparable``)."""
        best = None
        for rs in range(lo, hi, ref_block):
            block = rows(R, slice(rs, min(hi, rs + ref_block)))
            n = len(block[0])
            d, idx = module.smallest(q, block, min(fetch, n), indices=True)
            w = W[rs + idx]
            if best is not None:
                d = torch.cat([best[0], d], dim=1)
                w = torch.cat([best[1], w], dim=1)
                # Blocks may be narrower than fetch (wide pair heads).
                d, pick = torch.topk(d, min(fetch, d.shape[1]), dim=1, largest=False)
                w = torch.gather(w, 1, pick)
            best = (d, w)
        return best

    def share_mean(d, w, k, want):
        """Weighted mean of ``d`` over the closest references that hold
        ``want`` samples, and at least the ``k`` closest, whatever they weigh
        (over the last dimension; ``want`` a number, or one per class of a
        group)."""
        total = w.cumsum(-1)
        cover = torch.clamp(total[..., k - 1], min=want)
        take = torch.minimum((cover[..., None] - (total - w)).clamp(min=0), w)
        return (take * d).sum(-1) / take.sum(-1)

    def fetch_again(q, c, w, scores):
        """Class ``c``'s scores of the queries ``q`` whose closest references
        fetched (of weights ``w``) hold too few samples, from more of them."""
        if most[c] > guess[c]:
            short = torch.nonzero(w.sum(1) < enough[c])[:, 0]
            if len(short):
                lo, hi = bounds[c], bounds[c + 1]
                d, w = closest(rows(q, short), lo, hi, most[c])
                k = min(n_neighbors, hi - lo)
                scores[short, c] = share_mean(d, w, k, want[c])

    # Classes of as many references (so the same ``k`` and fetch) are
    # scored in groups: one matrix product and one top-k per group instead
    # of a dozen operations per class (on a GPU, as many launches). 968
    # classes of 10 references, 9,680 queries, 2 CPU threads: 4.7 s class
    # by class, 3.5 s grouped (in blocks of up to 84,000 queries).
    # Pair heads compare wider rows: their classes stay one by one.
    kind = torch.device(device).type
    groups = []
    if module.head is None:
        largest = min(ref_block, _GROUPED_REFS.get(kind, ref_block))
        group_refs = min(ref_block, _GROUP_REFS.get(kind, ref_block))
        shapes = {(int(c), int(g)) for c, g in zip(counts, guess, strict=True) if c}
        for m, fetch in sorted(shapes):
            if m > largest:
                continue
            members = np.flatnonzero((counts == m) & (guess == fetch))
            step = max(1, group_refs // m)
            for at in range(0, len(members), step):
                cls = members[at : at + step]
                index = torch.as_tensor(
                    bounds[cls][:, None] + np.arange(m), device=device
                )
                groups.append(
                    (
                        cls,
                        m,
                        fetch,
                        index.flatten(),
                        W[index],
                        torch.as_tensor(want[cls], device=device),
                        torch.as_tensor(cls, device=device),
                    )
                )
    in_groups = np.zeros(n_classes, dtype=bool)
    for cls, *_ in groups:
        in_groups[cls] = True
    query_values = _QUERY_VALUES.get(kind)
    if query_values is not None and module.head is None:
        # The widest product: a group's, or a block of a class's references.
        alone = counts[(counts > 0) & ~in_groups]
        widths = [len(g[3]) for g in groups] + np.minimum(alone, ref_block).tolist()
        widest = max(widths, default=1)
        # At least 256 queries: each block costs a dozen operations per group.
        q_block = max(
            1, min(q_block, max(256, query_values // max(Q.shape[1], widest)))
        )

    out = np.empty((len(Q), n_classes), dtype=np.float64)
    for qs in range(0, len(Q), q_block):
        q = torch.as_tensor(Q[qs : qs + q_block], device=device, dtype=torch.float64)
        n_q = len(q)
        q = module.comparable(q)
        # A class with no reference cannot be predicted: inf. The block's
        # scores come back to the host at once, not class by class (a wait
        # for the device each).
        scores = torch.full(
            (n_q, n_classes), np.inf, dtype=torch.float64, device=device
        )
        for cls, m, fetch, ref_index, weights, wanted, columns in groups:
            # The group's references gathered here, block by block: at most
            # a block of them at a time, never a second copy of all.
            refs = rows(R, ref_index)
            d, idx = module.smallest(q, refs, fetch, indices=True, groups=m)
            w = torch.gather(weights.expand(n_q, -1, -1), 2, idx)
            scores.index_copy_(
                1, columns, share_mean(d, w, min(n_neighbors, m), wanted)
            )
            for j in np.flatnonzero(most[cls] > fetch):
                fetch_again(q, cls[j], w[:, j], scores)
        for c in range(n_classes):
            lo, hi = bounds[c], bounds[c + 1]
            if hi == lo or in_groups[c]:
                continue
            k = min(n_neighbors, hi - lo)
            d, w = closest(q, lo, hi, guess[c])
            scores[:, c] = share_mean(d, w, k, want[c])
            fetch_again(q, c, w, scores)
        out[qs : qs + n_q] = scores.cpu().numpy()
    return out


# -- the samples partial_fit keeps ----------------------------------------------


def new_reservoir(rng, device, Z, n_classes):
    """The state ``partial_fit`` carries between calls: its random stream and
    device, the samples ``seen`` of each class, and those ``kept`` (scaled
    rows like ``Z``, none yet)."""
    return SimpleNamespace(
        rng=rng,
        device=device,
        seen=np.zeros(n_classes, dtype=np.int64),
        kept=[Z[:0] for _ in range(n_classes)],
    )


def kept_samples(reservoir):
    """The kept samples, class by class, and their class codes."""
    codes = np.concatenate([np.full(len(k), c) for c, k in enumerate(reservoir.kept)])
    return np.concatenate(reservoir.kept), codes


def update_reservoir(reservoir, Z, codes, cap):
    """Keep at most ``cap`` samples of each class of all seen so far, a uniform
    random sample of them (Vitter's algorithm R, one reservoir per class)."""
    for c in np.unique(codes):
        rows = Z[codes == c]
        kept, seen = reservoir.kept[c], reservoir.seen[c]
        room = max(0, cap - len(kept))
        kept = np.concatenate([kept, rows[:room]])
        rest = rows[room:]
        if len(rest):
            # Sample i of the stream replaces a random slot with prob. cap / i.
            slots = (
                reservoir.rng.random_sample(len(rest))
                * (seen + room + 1 + np.arange(len(rest)))
            ).astype(np.int64)
            take = slots < cap
            kept = kept.copy()
            kept[slots[take]] = rest[take]
        reservoir.kept[c] = kept
        reservoir.seen[c] = seen + len(rows)
