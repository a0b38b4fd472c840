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


class BatchEnsembleLinear(nn.Module):
    """``n_members`` linear layers that share one weight matrix (BatchEnsemble).

    Member ``m`` computes ``((x * r[m]) @ W.T) * s[m] + bias[m]``: the weight
    ``W`` is shared, each member has its own input scaling ``r``, output scaling
    ``s`` and bias (Wen, Tran and Ba, 2020). As in TabM (Gorishniy et al.,
    2025), ``r`` starts as random signs in the first layer of an encoder and
    at one elsewhere, ``s`` at one, and the biases equal across members, so
    the members differ at first only by the signs of their inputs.

    The scalings are folded into one small weight matrix per member, so that
    the activations see one batched matrix product and no elementwise
    products (several times faster on a CPU than scaling the activations).

    Shape: ``(n_members, batch, in_features)`` to
    ``(n_members, batch, out_features)``, members first.
    """

    def __init__(self, in_features, out_features, n_members, random_signs=False):
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(
            torch.empty(out_features, in_features).uniform_(-bound, bound)
        )
        r = torch.ones(n_members, in_features)
        if random_signs:
            r = r.bernoulli_(0.5).mul_(2.0).sub_(1.0)
        self.r = nn.Parameter(r)
        self.s = nn.Parameter(torch.ones(n_members, out_features))
        bias = torch.empty(out_features).uniform_(-bound, bound)
        self.bias = nn.Parameter(bias.expand(n_members, -1).clone())

    def member_weights(self):
        """``(n_members, in_features, out_features)``: ``r[m] W.T s[m]``."""
        return self.r[:, :, None] * self.weight.T * self.s[:, None, :]

    def forward(self, x):
        return torch.baddbmm(self.bias[:, None, :], x, self.member_weights())


class MemberLinear(nn.Module):
    """One independent linear layer per member (TabM's output layer):
    ``(n_members, batch, in)`` to ``(n_members, batch, out)``."""

    def __init__(self, in_features, out_features, n_members):
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(
            torch.empty(n_members, in_features, out_features).uniform_(-bound, bound)
        )
        self.bias = nn.Parameter(
            torch.empty(n_members, out_features).uniform_(-bound, bound)
        )

    def forward(self, x):
        return torch.baddbmm(self.bias[:, None, :], x, self.weight)


class EnsembleMLPEncoder(nn.Module):
    """``n_members`` MLP encoders trained at once, sharing most of their weights.

    The hidden layers are :class:`BatchEnsembleLinear` (one shared weight matrix,
    per-member scalings and biases), the embedding layer is one
    :class:`MemberLinear` per member: the TabM architecture (Gorishniy, Kotelnikov
    and Babenko, "TabM: Advancing Tabular Deep Learning with Parameter-Efficient
    Ensembling", ICLR 2025) with an embedding in place of its prediction head.
    The output is the members' embeddings side by side, ``(batch, n_members *
    embedding_dim)``: :class:`SiameseModule` compares them member by member and
    the losses train each member on its own.

    Parameters
    ----------
    n_inputs : int
    hidden_layer_sizes : tuple of int
    embedding_dim : int
        Width of each member's embedding.
    dropout : float
    n_members : int
    """

    def __init__(
        self,
        n_inputs,
        hidden_layer_sizes=(128, 64),
        embedding_dim=32,
        dropout=0.0,
        n_members=8,
    ):
        super().__init__()
        self.n_members = n_members
        layers = []
        width = n_inputs
        for i, size in enumerate(hidden_layer_sizes):
            layers += [
                BatchEnsembleLinear(width, size, n_members, random_signs=i == 0),
                nn.ReLU(),
            ]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = size
        if hidden_layer_sizes:
            layers.append(MemberLinear(width, embedding_dim, n_members))
        else:  # a linear metric per member, told apart by its input signs
            layers.append(
                BatchEnsembleLinear(width, embedding_dim, n_members, random_signs=True)
            )
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        # Members first inside the network, side by side in its output.
        out = self.layers(x.expand(self.n_members, *x.shape))
        return out.transpose(0, 1).flatten(1)


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
        shape = (len(x), *self.image_shape)
        if x.device.type == "cpu":
            # On a CPU, oneDNN's convolutions and pooling are faster on images
            # stored channels last: a training step 1.3-1.4x, prediction
            # 1.8-2.2x (2 threads; 28x28 and 105x105 images, 64 and 96
            # filters). Images of one channel are laid out the same either
            # way, but only strides that say channels last take that path.
            # The values, and the order flatten gives them, are the same.
            # On an H200 (deterministic cuDNN) channels last, images and
            # weights, made a step on 28x28 images slower (4.15 against 3.68
            # ms) and prediction on 105x105 images too (61,000 against 71,000
            # images/s): a GPU keeps the layout. benchmarks/cnn_layout.py
            # measures the layouts.
            x = torch.empty(
                shape, dtype=x.dtype, device=x.device, memory_format=torch.channels_last
            ).copy_(x.reshape(shape))
        else:
            x = x.reshape(shape)
        return self.embed(self.features(x).flatten(1))


def _host_reads_are_free(device):
    """Whether the host may read a value computed on ``device`` (a count, a
    ``nonzero``) at no cost but the work itself.

    On a CPU it may; on a GPU the host would wait for every queued kernel
    (and a step with such a read cannot be captured in a CUDA graph). Code
    being compiled by :func:`torch.compile` may not either: a read would
    split the graph (and a size read from the data recompile it). Where a
    computation has a cheaper path that reads such a value, it takes it only
    where this is true. (Tests replace this function to run the other paths
    on a CPU.)
    """
    return torch.device(device).type == "cpu" and not torch.compiler.is_compiling()


def _adds_in_order(device):
    """Whether ``index_add_`` and ``scatter_add`` on ``device`` add the values
    that meet at one index in the same order on every run.

    On a CPU they do. A GPU adds them with atomic operations, in an order
    that changes from run to run, so the float sums (and two fits with the
    same ``random_state``) differ in their last bits; code that must repeat
    uses ``index_put_`` with ``accumulate=True`` there, which sorts the
    indices first and adds in their order (what torch itself runs under
    ``use_deterministic_algorithms``). (Tests replace this function to run
    that path on a CPU.)
    """
    return torch.device(device).type == "cpu"


def _head_dissimilarity(a, b, w, bias, select=None):
    """``-(|a_i - b_j| @ w + bias)`` for every row ``i`` of ``a`` and ``j``
    of ``b``: minus the logit of the pair head.

    Where :func:`_host_reads_are_free` (a CPU; ``select=True``), without the
    ``(n, m, d)`` tensor of differences: ``w_d |a_d - b_d|`` is ``|w_d a_d -
    w_d b_d|`` for ``w_d >= 0``, so the positive and negative parts of ``w``
    give two manhattan distances (``torch.cdist``), each over its own
    dimensions only (finding them makes the host wait for a GPU, and splits a
    compiled graph). Elsewhere (a GPU; ``select=False``), from the
    differences themselves in blocks (:func:`_head_blocks`), where a gradient
    is needed with :class:`_HeadDissimilarity`'s; in code that
    :func:`torch.compile` compiles, as two manhattan distances over all
    dimensions.
    """
    if select is None:
        select = _host_reads_are_free(w.device)
    if not select and not torch.compiler.is_compiling():
        if torch.is_grad_enabled() and any(t.requires_grad for t in (a, b, w, bias)):
            return _HeadDissimilarity.apply(a, b, w, bias)
        return _head_blocks(a, b, w, bias)
    return -(_weighted_l1(a, b, w, select) + bias)


def _weighted_l1(a, b, w, select):
    """``|a_i - b_j| @ w``, as :func:`_head_dissimilarity` computes it on a
    CPU (``select``) or in compiled code."""
    if select:
        parts = []
        for sign, dims in ((1.0, w > 0), (-1.0, w < 0)):
            (idx,) = torch.nonzero(dims, as_tuple=True)
            if len(idx):
                scale = w[idx].abs()
                part = torch.cdist(a[..., idx] * scale, b[..., idx] * scale, p=1.0)
                parts.append(part if sign > 0 else -part)
        if parts:  # (all weights 0: the formula below, which keeps a gradient)
            return parts[0] if len(parts) == 1 else parts[0] + parts[1]
    return _manhattan_parts(a, b, w)


def _manhattan_parts(a, b, w):
    """``|a_i - b_j| @ w`` as the manhattan distances of the rows scaled by
    the positive part of ``w``, minus those by its negative part."""
    pos, neg = w.clamp(min=0), (-w).clamp(min=0)
    return torch.cdist(a * pos, b * pos, p=1.0) - torch.cdist(a * neg, b * neg, p=1.0)


def _as_blocks(a, b):
    """``a`` and ``b``, ``(..., n, d)`` and ``(..., m, d)``, expanded to
    their common leading dimensions flattened into one: ``(L, n, d)`` and
    ``(L, m, d)``, and those leading dimensions."""
    lead = a.shape[:-2]
    if lead == b.shape[:-2] and len(lead) == 1:  # members first (the losses')
        return a, b, lead
    if lead != b.shape[:-2]:
        lead = torch.broadcast_shapes(lead, b.shape[:-2])
    L = math.prod(lead)
    A = a.expand(*lead, *a.shape[-2:]).reshape(L, *a.shape[-2:])
    B = b.expand(*lead, *b.shape[-2:]).reshape(L, *b.shape[-2:])
    return A, B, lead


def _pair_blocks(L, n, m, d):
    """The blocks of ``L`` leading entries of ``n`` rows, each against ``m``
    rows of ``d`` values, of at most :data:`_L1_BLOCK` differences: None
    when one block holds them all (indexing costs the host a few
    microseconds, which a GPU's small steps wait for), else ``(members,
    rows)`` slices whose part of an ``(L, n, ...)`` tensor is contiguous:
    whole entries at once when one fits, else rows of one entry. See
    :func:`_part`."""
    per_entry = n * m * d
    if L * per_entry <= _L1_BLOCK:
        yield None
    elif per_entry <= _L1_BLOCK:
        step = _L1_BLOCK // per_entry
        for lo in range(0, L, step):
            yield slice(lo, min(lo + step, L)), slice(0, n)
    else:
        rows = max(1, _L1_BLOCK // (m * d))
        for j in range(L):
            for s in range(0, n, rows):
                yield slice(j, j + 1), slice(s, min(s + rows, n))


def _part(T, block, rows=True):
    """The part of ``T`` (``(L, n, ...)``) for a block of :func:`_pair_blocks`
    (``rows=False``: its entries, all rows)."""
    if block is None:
        return T
    return T[block] if rows else T[block[0]]


def _differences(a, B):
    """``a_i - b_j`` of ``(h, r, d)`` and ``(h, m, d)`` rows, as a
    contiguous ``(h, r, m, d)`` tensor (written there at once: the
    broadcasting subtraction alone would choose another layout, which the
    matrix products after it would copy)."""
    (h, r, d), m = a.shape, B.shape[-2]
    out = a.new_empty((h, r, m, d))
    return torch.sub(a[:, :, None, :], B[:, None, :, :], out=out)


def _head_blocks(a, b, w, bias):
    """:func:`_head_dissimilarity` of ``(..., n, d)`` and ``(..., m, d)``
    rows from the differences in blocks (:func:`_pair_blocks`): per block,
    the differences, their absolute values, and one matrix-vector product
    that also adds the bias and takes the sign, written into the result.
    On a GPU this is much cheaper than ``torch.cdist`` with ``p=1``: on an
    H200, its kernel took 11 ms for the 1,024 x 1,024 pairs of a batch in
    each of 8 members (32 values a row)."""
    A, B, lead = _as_blocks(a, b)
    (L, n, d), m = A.shape, B.shape[-2]
    out = A.new_empty((L, n, m))
    for block in _pair_blocks(L, n, m, d):
        diff = _differences(_part(A, block), _part(B, block, rows=False)).abs_()
        part = _part(out, block).view(-1)
        torch.addmv(bias, diff.view(-1, d), w, beta=-1.0, alpha=-1.0, out=part)
    return out.view(*lead, n, m)


class _HeadDissimilarity(torch.autograd.Function):
    """:func:`_head_dissimilarity` of ``(..., n, d)`` and ``(..., m, d)``
    rows, ``(d,)`` weights and the bias, with the gradient written out.

    Forward: :func:`_head_blocks`. Backward, with ``G`` the incoming
    gradient (``N = -G``) and ``s_ijd = sign(a_id - b_jd)``: ``U_id = sum_j
    N_ij s_ijd`` and ``V_jd = sum_i N_ij s_ijd`` give ``w U`` for ``a``,
    ``-w V`` for ``b``, ``sum(a U) - sum(b V)`` (over rows and leading
    dimensions) for ``w`` and ``sum(N)`` for the bias, computed over the
    blocks of :func:`_pair_blocks`. A batch compared with itself (``b is
    a``, as in the in-batch losses) needs one of the two sums: with ``s_jid
    = -s_ijd``, ``a``'s gradient is ``w H`` with ``H_id = sum_j (N + N^T)_ij
    s_ijd``, and ``w``'s is ``sum(a H)``. PyTorch's backward of
    ``torch.cdist`` with ``p=1`` on a GPU writes a ``(..., m, n, d)`` buffer
    for each input of each of the two distances instead.
    """

    @staticmethod
    def forward(ctx, a, b, w, bias):
        ctx.same = b is a
        ctx.save_for_backward(a, b, w, bias)
        return _head_blocks(a, b, w, bias)

    @staticmethod
    def backward(ctx, G):
        a, b, w, bias = ctx.saved_tensors
        A, B, lead = _as_blocks(a, b)
        (L, n, d), m = A.shape, B.shape[-2]
        N = G.neg().reshape(L, n, m)
        grad_bias = N.sum().reshape(bias.shape)
        # The rows of a block times its signs: a batch of matrix-vector
        # products, written into the rows of the block.
        if ctx.same:
            S, U = N + N.mT, A.new_empty((L, n, d))
        else:
            S, U, V = N, A.new_empty((L, n, d)), A.new_zeros((L, m, d))
        for block in _pair_blocks(L, n, m, d):
            sign = _differences(_part(A, block), _part(B, block, rows=False))
            sign.sign_()
            h, r = sign.shape[:2]
            torch.bmm(
                _part(S, block).reshape(h * r, 1, m),
                sign.view(h * r, m, d),
                out=_part(U, block).view(h * r, 1, d),
            )
            if not ctx.same:
                _part(V, block, rows=False).add_(
                    torch.einsum("hrm,hrmd->hmd", _part(N, block), sign)
                )
        grad_w = (A * U).reshape(-1, d).sum(0)
        if ctx.same:
            return (U * w).reshape(a.shape), None, grad_w, grad_bias
        grad_w -= (B * V).reshape(-1, d).sum(0)
        # Back to the leading dimensions, then summed over those broadcast.
        return (
            (U * w).view(*lead, n, d).sum_to_size(a.shape),
            (V * -w).view(*lead, m, d).sum_to_size(b.shape),
            grad_w,
            grad_bias,
        )


# Differences (signs) in one block of _head_blocks and of
# _HeadDissimilarity's backward pass (128 MB of float32; the backward pass of
# two different sets of rows also sums them over rows, which may copy them):
# the 1,024 x 1,024 pairs of a batch of one network's 32-value embeddings at
# once.
_L1_BLOCK = 1 << 25


class _SelfEuclidean(torch.autograd.Function):
    """Euclidean distances (``squared``: their squares) between every two
    rows of a ``(members, n, d)`` batch of embeddings, with the gradient
    written out.

    Forward as :meth:`SiameseModule._pairwise`: ``|e_i|^2 + |e_j|^2 - 2
    e_i.e_j`` from one multiply-add, clamped at 0 (at 1e-12 before a square
    root). Backward, with ``G`` the incoming gradient of the squares:
    ``2 (rowsum(G) + colsum(G)) e - 2 (G + G^T) E``, two multiply-adds, where
    autograd would run the reverse of each recorded operation (some twenty:
    on a GPU at small batches each costs its launch). The clamp at 0 only
    catches rounding and is not differentiated; below the clamp of a square
    root, the gradient is 0, as autograd's.
    """

    @staticmethod
    def forward(ctx, E, squared):
        sq = E.pow(2).sum(-1)
        raw = torch.baddbmm(sq[..., :, None] + sq[..., None, :], E, E.mT, alpha=-2.0)
        D = raw.clamp_(min=0.0) if squared else raw.clamp_(min=1e-12).sqrt_()
        ctx.squared = squared
        ctx.save_for_backward(E, D)
        return D

    @staticmethod
    def backward(ctx, grad):
        E, D = ctx.saved_tensors
        if ctx.squared:
            G, scale = grad, 2.0
        else:
            # d sqrt(x) = dx / (2 sqrt(x)): the 1/2 is taken out of both terms.
            G, scale = (grad / D).masked_fill_(D <= math.sqrt(1e-12), 0.0), 1.0
        # Row i's gradient: 2 (rowsum(G) + colsum(G))_i e_i - 2 (G E + G^T E)_i,
        # the transposed product read by the matrix product as it is.
        dE = torch.baddbmm(
            E * (G.sum(-1) + G.sum(-2))[..., None], G, E, beta=scale, alpha=-scale
        )
        return dE.baddbmm_(G.mT, E, alpha=-scale), None


class SiameseModule(nn.Module):
    """The twin: one encoder shared by both sides, and how two embeddings compare.

    ``forward`` embeds a batch. ``pairwise`` and ``rowwise`` return
    dissimilarities (lower = more alike): a distance, or, with ``head=True``, minus
    the logit of a learned linear head on ``|a - b|`` (Koch et al. 2015).

    An encoder of ``n_members`` ensemble members returns their embeddings side
    by side; two samples are then as dissimilar as their members are on
    average: the root mean square of the members' euclidean distances (so that
    squared distances, the prototype and NCA logits, are averaged), the mean
    of their manhattan or cosine distances, or of the head's logits.
    ``member_pairwise`` and ``member_rowwise`` give each member's own
    dissimilarities, for the losses, which train every member on its own.

    Parameters
    ----------
    encoder : torch.nn.Module
    distance : {"euclidean", "manhattan", "cosine"}
    head : bool
    embedding_dim : int
        Output width of the encoder; needed for the head.
    n_members : int, default=1
        Number of ensemble members whose embeddings the encoder returns side by
        side (each ``embedding_dim // n_members`` wide).
    """

    def __init__(
        self, encoder, distance="euclidean", head=False, embedding_dim=None, n_members=1
    ):
        super().__init__()
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}; got {distance!r}.")
        self.encoder = encoder
        self.distance = distance
        self.n_members = n_members
        self.head = None
        if head:
            width = embedding_dim // n_members
            self.head = nn.Linear(width, 1)
            # Start as "closer is more alike": negative weights on |a - b|.
            with torch.no_grad():
                self.head.weight.uniform_(-2.0, -1.0).div_(math.sqrt(width))
                self.head.bias.fill_(1.0)

    def forward(self, x):
        return self.encoder(x)

    def one_member(self):
        """A module that compares the embeddings of one member as this one
        compares whole embeddings (same distance and head, one member)."""
        single = SiameseModule(nn.Identity(), distance=self.distance)
        single.head = self.head
        return single

    def members(self, e):
        """Embeddings ``(n, n_members * d)`` as ``(n_members, n, d)``."""
        return e.unflatten(-1, (self.n_members, -1)).transpose(0, 1)

    # -- one member's dissimilarities (any leading batch dimensions) ------------

    def member_pairwise(self, a, b, squared=False):
        """Dissimilarity of every row of ``a`` to every row of ``b``, for
        ``(..., n, d)`` and ``(..., m, d)`` embeddings of one member each."""
        return self._pairwise(a, b, squared, self._head_params(a.dtype, 1))

    def member_rowwise(self, a, b, squared=False):
        """Dissimilarity of row ``i`` of ``a`` to row ``i`` of ``b`` (one member)."""
        return self._rowwise(a, b, squared, self._head_params(a.dtype, 1))

    def _pairwise(self, a, b, squared, head):
        """Every row of ``a`` against every row of ``b``: the formulas, for
        one member's embeddings or for the members' side by side."""
        if head is not None:
            return _head_dissimilarity(a, b, *head)
        if self.distance == "euclidean":
            if b is a and a.dim() == 3 and a.requires_grad and torch.is_grad_enabled():
                return _SelfEuclidean.apply(a, squared)  # a training batch's
            # |a|^2 + |b|^2 - 2 a.b, in as few operations as the formula
            # allows (each is a kernel launch on a GPU): the norms once when
            # a batch is compared with itself, the product added to them in
            # the same kernel (``baddbmm``).
            sq_a = a.pow(2).sum(-1)
            sq_b = sq_a if b is a else b.pow(2).sum(-1)
            norms = sq_a[..., :, None] + sq_b[..., None, :]
            if a.dim() == b.dim() == 3 and len(a) == len(b):
                sq = torch.baddbmm(norms, a, b.mT, alpha=-2.0)
            elif a.dim() == b.dim() == 2:
                sq = torch.addmm(norms, a, b.T, alpha=-2.0)
            else:
                sq = torch.add(norms, a @ b.mT, alpha=-2.0)
            # Rounding can make a square slightly negative: one clamp either way.
            return sq.clamp(min=0.0) if squared else sq.clamp(min=1e-12).sqrt()
        if self.distance == "manhattan":
            return torch.cdist(a, b, p=1.0)
        return 1.0 - F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).transpose(-1, -2)

    def _rowwise(self, a, b, squared, head):
        """Row ``i`` of ``a`` against row ``i`` of ``b`` (see :meth:`_pairwise`)."""
        if head is not None:
            w, bias = head
            return -((a - b).abs() @ w + bias)
        if self.distance == "euclidean":
            sq = (a - b).pow(2).sum(-1)
            return sq if squared else sq.clamp(min=1e-12).sqrt()
        if self.distance == "manhattan":
            return (a - b).abs().sum(-1)
        return 1.0 - F.cosine_similarity(a, b, dim=-1)

    # -- the ensemble's dissimilarities, on embeddings side by side -------------

    def _side_by_side(self, e):
        """Rows whose plain distance is the members' combined one: scaled by
        ``1 / sqrt(k)`` (euclidean: the squares average) or ``1 / k``
        (manhattan), each member unit length first (cosine)."""
        k = self.n_members
        if k == 1 or self.head is not None:
            return e
        if self.distance == "cosine":
            unit = F.normalize(e.unflatten(-1, (k, -1)), dim=-1)
            return unit.flatten(-2) / math.sqrt(k)
        return e / (k if self.distance == "manhattan" else math.sqrt(k))

    def _head_params(self, dtype, n_members):
        """The head's weights and bias for ``n_members`` members side by side
        (applied to every member, its logits averaged), or None without a head."""
        if self.head is None:
            return None
        # (The weights as a view of the (1, d) matrix: ``weight[0]`` would
        # add an operation to the backward pass.)
        w, bias = self.head.weight.view(-1).to(dtype), self.head.bias.to(dtype)
        return (w if n_members == 1 else w.repeat(n_members) / n_members), bias

    def pairwise(self, a, b, squared=False):
        """Dissimilarity of every row of ``a`` to every row of ``b``."""
        a, b = self._side_by_side(a), self._side_by_side(b)
        return self._pairwise(a, b, squared, self._head_params(a.dtype, self.n_members))

    def comparable(self, e):
        """Rows ``e`` made ready for :meth:`smallest`, once for rows compared
        many times: a pair of the members side by side (scaled, see
        :meth:`pairwise`), unit length for the cosine distance, and each row's
        squared norm for the euclidean distance (else None)."""
        e = self._side_by_side(e)
        if self.head is None and self.distance == "euclidean":
            return e, e.pow(2).sum(1)
        if self.head is None and self.distance == "cosine":
            return F.normalize(e, dim=1), None
        return e, None

    def smallest(self, a, b, k, indices=False, groups=None):
        """The ``k`` smallest dissimilarities of each row of ``a`` to the rows of
        ``b``, ascending (with their column indices in ``b`` if ``indices``);
        ``a`` and ``b`` are pairs from :meth:`comparable`. With ``groups=m``,
        the rows of ``b`` are consecutive groups of ``m`` and the ``k``
        smallest are those of each group: shape ``(len(a), len(b) // m, k)``,
        indices within the group.

        Equal to ``topk(pairwise(a, b), k, largest=False)`` but cheaper: for the
        euclidean and cosine distances, rows are ranked by one matrix product
        and only the ``k`` kept values are turned into distances.
        """
        (a, sq_a), (b, sq_b) = a, b

        def grouped(values):
            return values if groups is None else values.unflatten(1, (-1, groups))

        if self.head is None and self.distance == "euclidean":
            part = grouped(torch.addmm(sq_b[None, :], a, b.T, alpha=-2.0))
            part, idx = torch.topk(part, k, dim=-1, largest=False)
            sq_a = sq_a.view(-1, *[1] * (part.dim() - 1))
            d = (part + sq_a).clamp(min=1e-12).sqrt()
        elif self.head is None and self.distance == "cosine":
            sim, idx = torch.topk(grouped(a @ b.T), k, dim=-1)
            d = 1.0 - sim
        else:
            head = self._head_params(a.dtype, self.n_members)
            d, idx = torch.topk(
                grouped(self._pairwise(a, b, False, head)), k, dim=-1, largest=False
            )
        return (d, idx) if indices else d

    def rowwise(self, a, b, squared=False):
        """Dissimilarity of row ``i`` of ``a`` to row ``i`` of ``b``."""
        a, b = self._side_by_side(a), self._side_by_side(b)
        return self._rowwise(a, b, squared, self._head_params(a.dtype, self.n_members))
