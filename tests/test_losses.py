import pickle

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from sksiamese import _networks
from sksiamese._losses import (
    InBatchLoss,
    RowPairLoss,
    _LogPickProbability,
    bce_pair_loss,
    contrastive_loss,
    nca_loss,
    prototype_loss,
    triplet_loss,
)
from sksiamese._networks import EnsembleMLPEncoder, MLPEncoder, SiameseModule


def _module(distance="euclidean", head=False):
    return SiameseModule(torch.nn.Identity(), distance, head=head, embedding_dim=2)


def test_contrastive_values():
    d = torch.tensor([0.5, 0.2, 1.5])
    same = torch.tensor([True, False, False])
    # positives: 0.25; negatives: (1 - 0.2)^2 = 0.64 and 0; mean of the two means.
    expected = (0.25 + 0.32) / 2
    assert contrastive_loss(d, same, margin=1.0).item() == pytest.approx(expected)


def test_float64_contrastive_loss_takes_its_margin_in_float64():
    # A margin such as 0.3 is not a float32 number: rounded to one, it
    # would put a float64 loss off by a relative 1e-7.
    d = torch.tensor([0.1, 0.25], dtype=torch.float64)
    expected = ((0.3 - 0.1) ** 2 + (0.3 - 0.25) ** 2) / 2
    got = contrastive_loss(d, torch.tensor([False, False]), margin=0.3)
    assert got.item() == pytest.approx(expected, rel=1e-14)
    a = torch.zeros(2, 2, dtype=torch.float64)
    b = torch.tensor([[0.1, 0.0], [0.25, 0.0]], dtype=torch.float64)
    pairs = RowPairLoss("contrastive", margin=0.3)
    got = pairs((a, b), torch.tensor([0, 0]), _module().double())
    assert got.item() == pytest.approx(expected, rel=1e-14)


def test_triplet_zero_when_classes_are_separated_by_margin():
    emb = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 0.0], [5.1, 0.0]])
    y = torch.tensor([0, 0, 1, 1])
    D = _module().pairwise(emb, emb)
    assert triplet_loss(D, y, margin=1.0).item() == pytest.approx(0.0)
    # Swap one label: now some triplets are violated.
    assert triplet_loss(D, torch.tensor([0, 1, 0, 1]), margin=1.0).item() > 0.5


def _triplet_by_loops(D, y, margin, weights):
    """Semi-hard triplet loss of one member, one triplet at a time (in torch
    operations, for autograd)."""
    terms, total = [], 0.0
    n = len(y)
    for a in range(n):
        negatives = [k for k in range(n) if y[k] != y[a]]
        for p in range(n):
            if p == a or y[p] != y[a]:
                continue
            farther = [k for k in negatives if D[a, k] > D[a, p]]
            pick = min if farther else max
            k = pick(farther or negatives, key=lambda k: D[a, k].item())
            terms.append(torch.relu(D[a, p] - D[a, k] + margin) * weights[a])
            total += weights[a]
    return torch.stack(terms).sum() / total


@pytest.mark.parametrize("n_members", [None, 3])
def test_triplet_mining_matches_a_loop_over_every_triplet(n_members):
    # The loss searches each anchor's sorted negatives instead of comparing
    # every triplet; rounded distances give ties, which the search must treat
    # as the loop does (a negative as far as the positive is not semi-hard).
    gen = torch.Generator().manual_seed(0)
    shape = (24, 24) if n_members is None else (n_members, 24, 24)
    D = (torch.rand(shape, generator=gen, dtype=torch.float64) * 4).round() / 2
    D = (D + D.transpose(-1, -2)) / 2
    y = torch.randint(3, (24,), generator=gen)
    weights = torch.rand(24, generator=gen, dtype=torch.float64)
    for w in (None, weights):
        got = triplet_loss(D, y, margin=0.7, sample_weight=w)
        members = D[None] if n_members is None else D
        ones = torch.ones(24, dtype=torch.float64)
        expected = [
            _triplet_by_loops(m, y, 0.7, w if w is not None else ones).item()
            for m in members
        ]
        assert got.item() == pytest.approx(sum(expected) / len(expected), rel=1e-12)


@pytest.mark.parametrize("n_members", [None, 3])
@pytest.mark.parametrize("adds_in_order", [True, False])
def test_triplet_gradient_matches_autograd_through_a_loop(
    n_members, adds_in_order, monkeypatch
):
    """The triplet loss's gradient, written out, against autograd's through
    a loop over every triplet (some terms inactive), and ``gradcheck``; also
    with the sums a GPU makes (index_put_, where scatter_add would add in an
    order that changes from run to run)."""
    monkeypatch.setattr(_networks, "_adds_in_order", lambda device: adds_in_order)
    gen = torch.Generator().manual_seed(1)
    shape = (12, 12) if n_members is None else (n_members, 12, 12)
    D = torch.rand(shape, generator=gen, dtype=torch.float64) * 2
    D = ((D + D.transpose(-1, -2)) / 2).requires_grad_(True)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 0, 1, 1, 0, 2])
    w = torch.rand(12, generator=gen, dtype=torch.float64)
    got = triplet_loss(D, y, margin=0.3, sample_weight=w)
    members = D[None] if n_members is None else D
    expected = torch.stack([_triplet_by_loops(m, y, 0.3, w) for m in members]).mean()
    torch.testing.assert_close(got, expected)
    (grad,) = torch.autograd.grad(got, D)
    (expected_grad,) = torch.autograd.grad(expected, D)
    assert (grad != 0).sum() > 10
    torch.testing.assert_close(grad, expected_grad)
    # D symmetric: its transpose, a view of another layout, has the same
    # loss; the gradient, which keeps that layout, is the transpose.
    (grad_of_view,) = torch.autograd.grad(
        triplet_loss(D.mT, y, margin=0.3, sample_weight=w), D
    )
    assert not D.mT.is_contiguous()
    torch.testing.assert_close(grad_of_view, grad.mT)
    assert torch.autograd.gradcheck(
        lambda D: triplet_loss(D, y, margin=0.3, sample_weight=w), (D,)
    )


@pytest.mark.parametrize("loss", ["contrastive", "triplet", "nca"])
@pytest.mark.parametrize("n_members", [1, 3])
def test_float32_losses_take_weights_of_another_dtype(loss, n_members):
    # The factors made from the weights take the distances' dtype (the sums
    # are products that do not mix dtypes): the float32 loss is the float64
    # loss, rounded.
    gen = torch.Generator().manual_seed(0)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1])
    emb = torch.randn(len(y), 2 * n_members, generator=gen, dtype=torch.float64)
    w = torch.rand(len(y), generator=gen, dtype=torch.float64) + 0.5
    module = SiameseModule(
        torch.nn.Identity(), embedding_dim=2 * n_members, n_members=n_members
    )

    def value(emb, weights):
        if loss == "nca":
            return nca_loss(emb, y, module, sample_weight=weights)
        E = module.members(emb)
        D = module.member_pairwise(E, E)
        if loss == "triplet":
            return triplet_loss(D, y, sample_weight=weights)
        pair_w = weights[:, None] + weights[None, :]
        return contrastive_loss(D, y[:, None] == y[None, :], weights=pair_w)

    got = value(emb.float(), w)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(value(emb, w).item(), rel=1e-5)


@pytest.mark.parametrize("loss", [contrastive_loss, bce_pair_loss])
def test_pair_losses_take_narrower_weights_when_a_kind_of_pair_is_absent(loss):
    # Only the diagonal is "same", at weight 0: the same pairs' total is 0,
    # and the float64 loss's factors must not come from float32 arithmetic
    # (whose smallest normal number is not float64's).
    y = torch.arange(5)
    same = y[:, None] == y[None, :]
    w = torch.ones(5, 5, dtype=torch.float32).fill_diagonal_(0.0)
    d = torch.rand(
        5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    got = loss(d, same, weights=w)
    assert got.dtype == torch.float64 and torch.isfinite(got)
    assert got.item() == pytest.approx(
        loss(d, same, weights=w.double()).item(), rel=1e-12
    )


def test_prototype_loss_prefers_tight_classes():
    module = _module()
    y = torch.tensor([0, 0, 1, 1])
    tight = torch.tensor([[0.0, 0.0], [0.1, 0.0], [3.0, 0.0], [3.1, 0.0]])
    mixed = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.1, 0.0], [3.1, 0.0]])
    assert prototype_loss(tight, y, module) < 0.01 < prototype_loss(mixed, y, module)


def test_nca_loss_lets_a_class_keep_two_clusters():
    """Class 0 in two tight clusters on either side of class 1: every sample
    sits next to its own class (NCA loss near 0), but class 0's mean sits on
    class 1 (prototype loss high)."""
    module = _module()
    cluster = torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [0.1, 0.1]])
    emb = torch.cat([cluster - 10.0, cluster + 10.0, cluster])
    y = torch.tensor([0] * 8 + [1] * 4)
    assert nca_loss(emb, y, module) < 0.01
    assert prototype_loss(emb, y, module) > 1.0


def test_nca_loss_values():
    """Three points on a line: the probability that each picks its class mate,
    written out by hand."""
    module = _module()
    emb = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]], requires_grad=True)
    y = torch.tensor([0, 0, 1])
    e = torch.exp
    p0 = e(-torch.tensor(1.0)) / (e(-torch.tensor(1.0)) + e(-torch.tensor(9.0)))
    p1 = e(-torch.tensor(1.0)) / (e(-torch.tensor(1.0)) + e(-torch.tensor(4.0)))
    # Sample 2 has no class mate in the batch: no term.
    expected = -(torch.log(p0) + torch.log(p1)) / 2
    value = nca_loss(emb, y, module)
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    # The lone sample's empty row gives no NaN gradient.
    value.backward()
    assert torch.isfinite(emb.grad).all()


@pytest.mark.parametrize("scale", [1.0, 1000.0], ids=["near", "far"])
def test_nca_log_probability_and_gradient_match_two_logsumexp(scale):
    """The NCA loss's log probabilities (two members, rows of all samples or
    of some) and their gradients, against the two ``logsumexp`` they stand
    for; "far": entries 1000s apart, where plain exponentials underflow."""
    gen = torch.Generator().manual_seed(4)
    D = scale * torch.rand(2, 5, 6, generator=gen, dtype=torch.float64)
    D.requires_grad_(True)
    excluded = torch.zeros(5, 6, dtype=torch.bool)
    excluded[torch.arange(5), torch.arange(5)] = True  # each row's own sample
    picks = torch.rand(5, 6, generator=gen) < 0.4
    picks[:, 5] = True  # every row picks something: column 5 is never excluded
    picks[3] = True  # a row picking everything: log p = 0
    picks &= ~excluded
    got = _LogPickProbability.apply(D, excluded, ~picks)
    logits = (-D).masked_fill(excluded, float("-inf"))
    expected = torch.logsumexp(
        logits.masked_fill(~picks, float("-inf")), dim=-1
    ) - torch.logsumexp(logits, dim=-1)
    torch.testing.assert_close(got, expected)
    assert (got[:, 3] == 0).all()
    grad_out = torch.rand(2, 5, generator=gen, dtype=torch.float64)
    (grad,) = torch.autograd.grad(got, D, grad_out)
    (grad_expected,) = torch.autograd.grad(expected, D, grad_out)
    torch.testing.assert_close(grad, grad_expected)
    assert torch.autograd.gradcheck(
        lambda D: _LogPickProbability.apply(D, excluded, ~picks), (D,)
    )


@pytest.mark.parametrize("loss", ["contrastive", "bce", "triplet", "prototype", "nca"])
@pytest.mark.parametrize("distance", ["euclidean", "manhattan", "cosine"])
def test_in_batch_losses_train_an_encoder(loss, distance):
    torch.manual_seed(0)
    y = torch.arange(4).repeat_interleave(8)
    x = torch.randn(32, 6) + 3 * torch.nn.functional.one_hot(y, 6).float()
    module = SiameseModule(
        MLPEncoder(6, (16,), 4), distance, head=loss == "bce", embedding_dim=4
    )
    criterion = InBatchLoss(loss, margin=1.0)
    opt = torch.optim.Adam(module.parameters(), lr=1e-2)
    first = criterion(module(x), y, module).item()
    for _ in range(60):
        opt.zero_grad()
        value = criterion(module(x), y, module)
        value.backward()
        opt.step()
    assert torch.isfinite(value)
    assert value.item() < 0.5 * first


def test_row_pair_loss_bce_and_contrastive():
    module = _module()
    a = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    b = torch.tensor([[0.0, 0.1], [4.0, 0.0]])
    y = torch.tensor([1, 0])
    assert RowPairLoss("contrastive")((a, b), y, module).item() < 0.01
    with pytest.raises(ValueError, match="'contrastive' or 'bce'"):
        RowPairLoss("triplet")
    # "bce": the head's logit of "same" is minus its dissimilarity; the mean
    # binary cross-entropy of each kind of pair, then of the two kinds.
    torch.manual_seed(0)
    head = _module(head=True)
    a, b = torch.randn(6, 2), torch.randn(6, 2)
    y = torch.tensor([1, 0, 1, 0, 1, 1])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        -head.rowwise(a, b), y.float(), reduction="none"
    )
    expected = (bce[y == 1].mean() + bce[y == 0].mean()) / 2
    value = RowPairLoss("bce")((a, b), y, head)
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    assert value.item() != pytest.approx(
        RowPairLoss("contrastive")((a, b), y, head).item(), rel=1e-3
    )


def test_unknown_loss():
    with pytest.raises(ValueError, match="loss must be one of"):
        InBatchLoss("hinge")


@pytest.mark.parametrize("distance", ["euclidean", "manhattan", "cosine"])
@pytest.mark.parametrize("head", [False, True])
def test_smallest_matches_sorted_pairwise(distance, head):
    torch.manual_seed(0)
    module = SiameseModule(torch.nn.Identity(), distance, head=head, embedding_dim=5)
    a, b = (
        torch.randn(7, 5, dtype=torch.float64),
        torch.randn(11, 5, dtype=torch.float64),
    )
    module = module.double()
    expected = torch.sort(module.pairwise(a, b), dim=1).values[:, :3]
    torch.testing.assert_close(
        module.smallest(module.comparable(a), module.comparable(b), 3), expected
    )


@pytest.mark.parametrize("loss", ["contrastive", "bce", "triplet", "prototype", "nca"])
def test_class_weight_of_ones_changes_nothing(loss):
    torch.manual_seed(0)
    module = _module(head=loss == "bce")
    emb = torch.randn(12, 2)
    y = torch.tensor([0] * 4 + [1] * 4 + [2] * 4)
    plain = InBatchLoss(loss)(emb, y, module)
    ones = InBatchLoss(loss, class_weight=[1.0, 1.0, 1.0])(emb, y, module)
    doubled = InBatchLoss(loss, class_weight=[2.0, 2.0, 2.0])(emb, y, module)
    assert ones.item() == pytest.approx(plain.item(), rel=1e-6)
    # Only relative weights matter.
    assert doubled.item() == pytest.approx(plain.item(), rel=1e-6)


def test_class_weight_reaches_the_terms_of_each_loss():
    torch.manual_seed(0)
    module = _module()
    emb = torch.randn(8, 2)
    y = torch.tensor([0] * 4 + [1] * 4)
    heavy = [1.0, 1e6]  # practically only class 1's terms count
    # prototype: the mean cross-entropy of class 1's samples alone.
    per_sample = []
    for i in range(8):
        per_sample.append(prototype_loss(emb, y, module, torch.eye(8)[i]))
    expected = torch.stack(per_sample[4:]).mean()
    got = InBatchLoss("prototype", class_weight=heavy)(emb, y, module)
    assert got.item() == pytest.approx(expected.item(), rel=1e-4)
    # contrastive: same pairs of class 0 no longer count, those of class 1 do.
    i, j = torch.triu_indices(8, 8, offset=1)
    D = module.pairwise(emb, emb)
    d, same = D[i, j], y[i] == y[j]
    w = torch.tensor(heavy)[y]
    pair_w = (w[i] + w[j]) / 2
    values = torch.where(same, d.pow(2), torch.relu(1.0 - d).pow(2))
    same1 = same & (y[i] == 1)
    expected = (
        values[same1].mean()
        + (values[~same] * pair_w[~same]).sum() / pair_w[~same].sum()
    ) / 2
    got = InBatchLoss("contrastive", class_weight=heavy)(emb, y, module)
    assert got.item() == pytest.approx(expected.item(), rel=1e-4)


@pytest.mark.parametrize("loss", ["prototype", "nca", "contrastive", "bce", "triplet"])
@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_ensemble_loss_is_the_mean_of_the_members_losses(loss, distance):
    """Each member is trained on its own: the loss of embeddings side by side
    is the mean of the loss of each member's embeddings, and so are its
    gradients."""
    torch.manual_seed(0)
    k, d = 3, 4
    head = loss == "bce"
    ensemble = SiameseModule(
        torch.nn.Identity(), distance, head=head, embedding_dim=k * d, n_members=k
    )
    single = ensemble.one_member()
    y = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    weights = [1.0, 2.0, 0.5]
    emb = torch.randn(len(y), k * d, requires_grad=True)
    criterion = InBatchLoss(loss, margin=1.0, class_weight=weights)
    total = criterion(emb, y, ensemble)
    parts = [criterion(emb[:, m * d : (m + 1) * d], y, single) for m in range(k)]
    torch.testing.assert_close(total, torch.stack(parts).mean())
    (grad,) = torch.autograd.grad(total, emb)
    (grad_parts,) = torch.autograd.grad(torch.stack(parts).mean(), emb)
    torch.testing.assert_close(grad, grad_parts)


def test_row_pair_loss_with_members_and_groups():
    """Pairs of an ensemble: the mean of the members' pair losses; with
    groups, plus the NCA loss of both sides with their groups as classes."""
    torch.manual_seed(0)
    k, d = 2, 3
    ensemble = SiameseModule(
        torch.nn.Identity(), "euclidean", embedding_dim=k * d, n_members=k
    )
    single = ensemble.one_member()
    a, b = torch.randn(6, k * d), torch.randn(6, k * d)
    same = torch.tensor([1, 0, 1, 0, 1, 0])
    groups_a = torch.tensor([0, 1, 2, 3, 4, 5])
    groups_b = torch.tensor([0, 6, 2, 7, 4, 8])
    plain = RowPairLoss("contrastive")((a, b), same, ensemble)
    members = [
        RowPairLoss("contrastive")(
            (a[:, m * d : (m + 1) * d], b[:, m * d : (m + 1) * d]), same, single
        )
        for m in range(k)
    ]
    torch.testing.assert_close(plain, torch.stack(members).mean())
    y = torch.stack([same, groups_a, groups_b], dim=1)
    # Without weight the groups change nothing; with weight 2, twice the NCA.
    torch.testing.assert_close(RowPairLoss("contrastive")((a, b), y, ensemble), plain)
    grouped = RowPairLoss("contrastive", group_weight=2.0)((a, b), y, ensemble)
    nca = nca_loss(torch.cat([a, b]), torch.cat([groups_a, groups_b]), ensemble)
    torch.testing.assert_close(grouped, plain + 2.0 * nca)
    assert nca > 0


def _loss_module(distance, head, dim=3):
    module = SiameseModule(torch.nn.Identity(), distance, head=head, embedding_dim=dim)
    return module.double()


def _prototype_by_loops(E, y, module, weights):
    """Prototype loss of one member, sample by sample: the means of every
    class, the own one without the sample."""
    scale = 10.0 if module.head is None and module.distance == "cosine" else 1.0
    classes = sorted(set(y))
    terms, used = [], []
    for i in range(len(y)):
        others = [j for j in range(len(y)) if y[j] == y[i] and j != i]
        if not others:
            continue  # alone in its class: no term
        logits = []
        for c in classes:
            rows = others if c == y[i] else [j for j in range(len(y)) if y[j] == c]
            mean = E[rows].mean(0, keepdim=True)
            logits.append(-module.member_rowwise(E[i : i + 1], mean, squared=True)[0])
        log_p = torch.log_softmax(scale * torch.stack(logits), 0)
        terms.append(-log_p[classes.index(y[i])])
        used.append(weights[i])
    return sum(t * w for t, w in zip(terms, used, strict=True)) / sum(used)


#: The distances, and the euclidean one with a learned head, whose
#: prototype loss is checked against loops.
PROTOTYPE_DISTANCES = [
    ("euclidean", False),
    ("manhattan", False),
    ("cosine", False),
    ("euclidean", True),
]


def _random_members(distance, head, n_members, y, seed):
    """Float64 embeddings of ``y`` (3 values per member, with gradients),
    random sample weights and the identity encoder's module."""
    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(len(y), 3 * n_members, generator=gen, dtype=torch.float64)
    emb.requires_grad_()
    weights = torch.rand(len(y), generator=gen, dtype=torch.float64)
    module = SiameseModule(
        torch.nn.Identity(),
        distance,
        head=head,
        embedding_dim=3 * n_members,
        n_members=n_members,
    ).double()
    return emb, weights, module


@pytest.mark.parametrize("distance, head", PROTOTYPE_DISTANCES)
@pytest.mark.parametrize("n_members", [1, 3])
def test_prototype_loss_matches_leave_one_out_means_by_loops(distance, head, n_members):
    # The euclidean loss gets the distance to the mean of a sample's class
    # mates by scaling the one to its whole class's mean, and has its
    # gradient written out; the others compute that mean. Classes of 1, 2, 3
    # and 5 samples; the lone one has no term. Members: the mean of each
    # member's loss. With class codes 0 .. 5, codes 4 and 5 are absent.
    y = torch.tensor([3, 0, 1, 1, 2, 0, 2, 2, 0, 0, 0])
    emb, weights, module = _random_members(distance, head, n_members, y, seed=0)
    for w in (None, weights):
        expected = (
            sum(
                _prototype_by_loops(
                    e, y.tolist(), module, torch.ones(len(y)) if w is None else w
                )
                for e in module.members(emb)
            )
            / n_members
        )
        (g_expected,) = torch.autograd.grad(expected, emb)
        for n_classes in (None, 6):
            got = prototype_loss(emb, y, module, w, n_classes)
            assert got.item() == pytest.approx(expected.item(), rel=1e-10)
            (g_got,) = torch.autograd.grad(got, emb)
            torch.testing.assert_close(g_got, g_expected, rtol=1e-8, atol=1e-12)
    if distance == "euclidean" and not head:
        torch.autograd.gradcheck(
            lambda e: prototype_loss(e, y, module, weights, 6), (emb,)
        )


@pytest.mark.parametrize("distance, head", PROTOTYPE_DISTANCES)
def test_prototype_loss_of_members_that_leave_samples_out_by_loops(distance, head):
    # Each member's loss is the loss of the samples it keeps, as if the
    # others were not in the batch (neither scored nor in its means); the
    # members' losses are pooled by their total weight. Member 2 leaves out
    # both samples of class 1 (the class is absent for it), member 0 one of
    # the two samples of class 3 (the other is alone: no term).
    y = torch.tensor([3, 0, 1, 1, 2, 0, 2, 2, 0, 0, 0, 3])
    left_out = torch.tensor([0, 1, 2, 2, 0, 1, 1, 0, 2, 0, 1, 1])
    emb, weights, module = _random_members(distance, head, 3, y, seed=1)
    for w in (torch.ones(len(y), dtype=torch.float64), weights):
        losses, totals = [], []
        for m, e in enumerate(module.members(emb)):
            kept = torch.nonzero(left_out != m).flatten()
            codes = y[kept].tolist()
            losses.append(_prototype_by_loops(e[kept], codes, module, w[kept]))
            mates = [sum(c == code for c in codes) > 1 for code in codes]
            totals.append(w[kept][torch.tensor(mates)].sum())
        expected = sum(v * t for v, t in zip(losses, totals, strict=True)) / sum(totals)
        (g_expected,) = torch.autograd.grad(expected, emb)
        for n_classes in (None, 6):
            got = prototype_loss(emb, y, module, w, n_classes, left_out=left_out)
            assert got.item() == pytest.approx(expected.item(), rel=1e-10)
            (g_got,) = torch.autograd.grad(got, emb)
            torch.testing.assert_close(g_got, g_expected, rtol=1e-8, atol=1e-12)
    # A member's parameters owe nothing to the samples it leaves out: their
    # rows of that member's embedding get no gradient.
    got = prototype_loss(emb, y, module, weights, 6, left_out=left_out)
    (g,) = torch.autograd.grad(got, emb)
    for m, g_m in enumerate(module.members(g)):
        assert torch.all(g_m[left_out == m] == 0)
        assert torch.all(g_m[left_out != m].abs().sum(1) > 0)
    if distance == "euclidean" and not head:
        torch.autograd.gradcheck(
            lambda e: prototype_loss(e, y, module, weights, 6, left_out=left_out),
            (emb,),
        )


def test_in_batch_loss_takes_the_member_that_leaves_each_sample_out():
    # Labels of two columns: (class code, member that leaves the sample out),
    # for the prototype loss; the other losses refuse them.
    gen = torch.Generator().manual_seed(2)
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    left_out = torch.tensor([0, 1, 1, 0, 1, 0])
    emb = torch.randn(6, 4, generator=gen)
    module = SiameseModule(torch.nn.Identity(), n_members=2)
    expected = prototype_loss(emb, y, module, n_classes=2, left_out=left_out)
    got = InBatchLoss("prototype", n_classes=2)(
        emb, torch.stack([y, left_out], 1), module
    )
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    assert got.item() != pytest.approx(prototype_loss(emb, y, module).item(), rel=1e-3)
    with pytest.raises(ValueError, match="prototype loss only"):
        InBatchLoss("nca")(emb, torch.stack([y, left_out], 1), module)


def _pair_loss_by_pairs(emb, module, y, loss, weights, margin=1.0):
    """Contrastive or BCE loss over the pairs above the diagonal, each pair's
    dissimilarity computed on its own: the mean over same pairs and the mean
    over different pairs, averaged."""
    i, j = torch.triu_indices(len(y), len(y), offset=1)
    d = module.rowwise(emb[i], emb[j])
    same, pair_w = y[i] == y[j], (weights[i] + weights[j]) / 2
    if loss == "bce":
        values = torch.nn.functional.binary_cross_entropy_with_logits(
            -d, same.double(), reduction="none"
        )
    else:
        values = torch.where(same, d.pow(2), torch.relu(margin - d).pow(2))
    means = [
        (values[m] * pair_w[m]).sum() / pair_w[m].sum()
        for m in (same, ~same)
        if m.any()
    ]
    return sum(means) / len(means)


@pytest.mark.parametrize("loss", ["contrastive", "bce"])
@pytest.mark.parametrize(
    "y",
    [[0, 0, 1, 1, 1, 2, 0, 2], [0, 1, 2, 3, 4], [1, 1, 1, 1]],
    ids=["mixed", "no-same-pair", "one-class"],
)
@pytest.mark.parametrize("spread", [1.0, 30.0], ids=["near", "far"])
@pytest.mark.parametrize("path", ["cpu", "gpu"])
def test_pair_losses_match_the_pairs_above_the_diagonal(loss, y, spread, path, request):
    # The in-batch loss takes every pair both ways round on the whole
    # matrix; a batch without same (or without different) pairs is the mean
    # of the other kind alone. Values and gradients (written out by the
    # loss, and for the head's distances on a GPU), with pairs inside and
    # beyond the margin ("far": logits beyond the range where softplus is
    # computed exactly).
    if path == "gpu":
        request.getfixturevalue("as_on_a_gpu")
    gen = torch.Generator().manual_seed(1)
    y = torch.tensor(y)
    emb = spread * torch.randn(len(y), 3, generator=gen, dtype=torch.float64)
    emb.requires_grad_(True)
    module = _loss_module("euclidean", head=loss == "bce")
    class_weight = [1.0, 3.0, 0.5, 2.0, 1.5]
    for cw in (None, class_weight):
        got = InBatchLoss(loss, class_weight=cw)(emb, y, module)
        weights = torch.ones(5) if cw is None else torch.tensor(cw)
        expected = _pair_loss_by_pairs(emb, module, y, loss, weights[y].double())
        assert got.item() == pytest.approx(expected.item(), rel=1e-10)
        (grad,) = torch.autograd.grad(got, emb)
        (grad_expected,) = torch.autograd.grad(expected, emb)
        torch.testing.assert_close(grad, grad_expected, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("loss", ["contrastive", "bce", "triplet", "prototype", "nca"])
@pytest.mark.parametrize(
    "y", [[0], [0, 1, 2], [4, 4, 4]], ids=["one-sample", "no-mates", "one-class"]
)
def test_batches_without_terms_give_zero_and_zero_gradients(loss, y):
    # Nothing to compare (no pair of a kind, no mate, no negative) must not
    # give NaN, which would end training.
    y = torch.tensor(y)
    module = _loss_module("euclidean", head=loss == "bce")
    emb = torch.randn(len(y), 3, dtype=torch.float64, requires_grad=True)
    value = InBatchLoss(loss)(emb, y, module)
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(emb.grad).all()
    if loss in ("triplet", "nca") or (loss == "prototype" and len(set(y)) == len(y)):
        assert value.item() == 0.0
        assert not emb.grad.any()


class _HostWaits(TorchDispatchMode):
    """Records the operations that make the host wait for the device: reading a
    value (``.item()``, ``bool(tensor)``) or a result whose size depends on
    the data (``nonzero``, boolean indexing, ``unique``)."""

    waiting = ("_local_scalar_dense", "nonzero", "masked_select", "unique")

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if any(w in name for w in self.waiting):
            self.seen.append(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("loss", ["contrastive", "bce", "triplet", "prototype", "nca"])
@pytest.mark.parametrize("n_members", [1, 4])
def test_a_training_step_of_the_in_batch_losses_never_waits_for_the_device(
    loss, n_members, as_on_a_gpu
):
    # On a GPU each such wait stalls the queue of kernels, and a step with
    # one cannot be captured in a CUDA graph. The prototype loss needs the
    # number of class codes (here given by the class weights; more codes
    # than samples too) to do without ``unique``; the others need nothing.
    torch.manual_seed(0)
    module = SiameseModule(
        EnsembleMLPEncoder(5, (8,), 4, n_members=n_members)
        if n_members > 1
        else MLPEncoder(5, (8,), 4),
        "euclidean",
        head=loss == "bce",
        embedding_dim=4 * n_members,
        n_members=n_members,
    )
    criterion = InBatchLoss(loss, class_weight=[1.0, 2.0, 0.5])
    x, y = torch.randn(12, 5), torch.tensor([0, 1, 2] * 4)
    with _HostWaits() as mode:
        criterion(module(x), y, module).backward()
    assert mode.seen == []
    if loss == "prototype":
        with _HostWaits() as mode:
            InBatchLoss(loss, n_classes=50)(module(x), y, module).backward()
        assert mode.seen == []
        # Without the number of codes, the batch's classes are looked up.
        with _HostWaits() as mode:
            InBatchLoss(loss)(module(x), y, module).backward()
        assert mode.seen == ["_unique2"]


@pytest.mark.parametrize(
    "distance, head",
    [("euclidean", False), ("cosine", False), ("euclidean", True)],
)
def test_prototype_loss_with_every_class_code_is_the_same(distance, head, request):
    # One column per class code, those absent from the batch masked out,
    # gives the loss and gradients of the batch's own classes.
    gen = torch.Generator().manual_seed(3)
    y = torch.tensor([4, 1, 1, 6, 4, 6, 6, 1, 4, 4])  # codes 0, 2, 3, 5 absent
    emb = torch.randn(len(y), 3, generator=gen, dtype=torch.float64)
    emb.requires_grad_()
    weights = torch.rand(len(y), generator=gen, dtype=torch.float64)
    module = _loss_module(distance, head)
    for w in (None, weights):
        found = prototype_loss(emb, y, module, w)
        (g_found,) = torch.autograd.grad(found, emb)
        # Codes 0 .. 6; more codes than samples, the classes renumbered on
        # the device (done off a CPU) or looked up.
        for n_classes, renumber in ((7, None), (500, True), (500, False)):
            coded = prototype_loss(emb, y, module, w, n_classes, renumber)
            torch.testing.assert_close(coded, found)
            (g_coded,) = torch.autograd.grad(coded, emb)
            torch.testing.assert_close(g_coded, g_found)
    # By default the classes are renumbered where reading them would wait
    # (a GPU), looked up with ``unique`` on a CPU.
    with _HostWaits() as mode:
        prototype_loss(emb, y, module, n_classes=500).backward()
    assert "_unique2" in mode.seen
    request.getfixturevalue("as_on_a_gpu")
    for renumber, waits in ((True, []), (False, ["_unique2"]), (None, [])):
        with _HostWaits() as mode:
            prototype_loss(emb, y, module, n_classes=500, renumber=renumber).backward()
        assert mode.seen == waits


@pytest.mark.parametrize(
    "y",
    [[0, 1, 1, 2, 3, 3, 3, 4], [0, 1, 2], [5, 5]],
    ids=["some-alone", "all-alone", "all-mates"],
)
def test_nca_loss_of_the_rows_with_mates_only_is_the_same(y):
    # The pair estimator leaves out, on a CPU, the rows of vectors without a
    # mate in the batch; values and gradients are those of the whole matrix.
    y = torch.tensor(y)
    module = _loss_module("euclidean", head=False)
    emb = torch.randn(len(y), 3, dtype=torch.float64, requires_grad=True)
    weights = torch.rand(len(y), dtype=torch.float64)
    for w in (None, weights):
        whole = nca_loss(emb, y, module, w)
        mates = nca_loss(emb, y, module, w, only_mates=True)
        torch.testing.assert_close(mates, whole)
        g_whole, g_mates = (torch.autograd.grad(v, emb)[0] for v in (whole, mates))
        torch.testing.assert_close(g_mates, g_whole)


@pytest.fixture
def labels_made(monkeypatch):
    """The in-batch losses whose label terms are made, once per time."""
    made = []
    make = InBatchLoss._make_labels
    monkeypatch.setattr(
        InBatchLoss,
        "_make_labels",
        lambda self, *args: made.append(self) or make(self, *args),
    )
    return made


@pytest.mark.parametrize("loss", ["contrastive", "bce", "triplet", "prototype", "nca"])
@pytest.mark.parametrize("n_members", [1, 3])
def test_the_terms_of_one_tensor_of_labels_are_made_once(loss, n_members, labels_made):
    """Called again with the tensor of labels of its last call (as with every
    batch of a sampler whose batches hold every class), a loss reuses what it
    took from the labels. With other labels, the same tensor changed in
    place, class weights changed in place, embeddings of another type, or in
    inference mode, it makes them again. Values and gradients always equal
    a new loss's, bit for bit."""
    torch.manual_seed(0)
    made = labels_made
    module = SiameseModule(
        torch.nn.Identity(),
        "euclidean",
        head=loss == "bce",
        embedding_dim=4 * n_members,
        n_members=n_members,
    )
    criterion = InBatchLoss(loss, class_weight=[1.0, 2.0, 0.5], n_classes=3)

    def check(y, n_made, dtype=torch.float32):
        emb = torch.randn(8, 4 * n_members, dtype=dtype, requires_grad=True)
        got = criterion(emb, y, module)
        (grad,) = torch.autograd.grad(got, emb)
        assert sum(m is criterion for m in made) == n_made
        weights = criterion.class_weight.tolist()
        new = InBatchLoss(loss, class_weight=weights, n_classes=3)
        expected = new(emb, y.clone(), module)
        (expected_grad,) = torch.autograd.grad(expected, emb)
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=0)

    y = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1])
    check(y, 1)
    check(y, 1)
    y[:2] = 2  # in place: the labels' version changes
    check(y, 2)
    check(y.clone(), 3)
    check(y, 4)
    check(y, 5, dtype=torch.float64)
    with torch.inference_mode():
        criterion(torch.randn(8, 4 * n_members), y, module)
    assert sum(m is criterion for m in made) == 6
    check(y, 7)  # terms made in inference mode cannot be saved for backward
    criterion.class_weight[0] = 4.0
    check(y, 8)
    # Not pickled with the loss.
    copy = pickle.loads(pickle.dumps(criterion))
    assert "_last_labels" in criterion.__dict__
    assert "_last_labels" not in copy.__dict__


def test_the_terms_of_the_labels_follow_a_change_of_the_loss(labels_made):
    # The loss changed on the object itself: its terms are made again.
    module = SiameseModule(torch.nn.Identity(), "euclidean", embedding_dim=4)
    criterion = InBatchLoss("contrastive")
    y = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1])
    emb = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    criterion(emb, y, module)
    for loss in ("triplet", "nca", "prototype", "contrastive"):
        criterion.loss = loss
        assert criterion(emb, y, module) == InBatchLoss(loss)(emb, y, module)
    assert sum(m is criterion for m in labels_made) == 5


@pytest.mark.parametrize("copied", [False, True], ids=["on-device", "copied"])
def test_a_fit_makes_the_terms_of_the_labels_once_per_epoch_and_phase(
    labels_made, copied, monkeypatch
):
    """With two classes every batch holds both, in the same places: the
    loss's label terms are made when training starts and when the held-out
    batches start, not at each of the many batches. Also when the batches
    are copied to the device at every step (training data left on the host
    of a GPU, here a copy on the CPU): the shared labels are copied once."""
    from sklearn.datasets import load_breast_cancer

    from sksiamese import SiameseClassifier
    from sksiamese._training import SiameseNet

    if copied:
        to_device = SiameseNet._to_device
        monkeypatch.setattr(
            SiameseNet,
            "_to_device",
            lambda net, x: x.clone() if torch.is_tensor(x) else to_device(net, x),
        )

    X, y = load_breast_cancer(return_X_y=True)
    params = dict(hidden_layer_sizes=(16,), embedding_dim=8, early_stopping=True)
    clf = SiameseClassifier(batch_size=32, max_epochs=3, random_state=0, **params)
    clf.fit(X, y)
    history = clf.net_.history
    assert len(history) == 3 and "valid_loss" in history[-1]
    assert sum(history[:, "train_batch_count"]) >= 30
    assert len(labels_made) == 2 * len(history)
    # The copy of the labels (on the device) is not pickled with the model.
    assert ("_labels_copy" in clf.net_.__dict__) is copied
    assert "_labels_copy" not in pickle.loads(pickle.dumps(clf)).net_.__dict__


@pytest.mark.parametrize("loss", ["contrastive", "bce", "triplet", "prototype", "nca"])
def test_losses_run_in_float32_under_autocast(loss):
    """A hand-written loop may call a loss under autocast: it then runs in
    float32 on the encoder's bfloat16 embeddings (the losses' own backward
    passes expect their forward's types), the same as outside autocast."""
    torch.manual_seed(0)
    module = SiameseModule(
        MLPEncoder(5, (8,), 4), "euclidean", head=loss == "bce", embedding_dim=4
    )
    x, y = torch.randn(16, 5), torch.arange(16) % 2
    with torch.autocast("cpu", dtype=torch.bfloat16):
        emb = module(x)
        assert emb.dtype == torch.bfloat16
        got = InBatchLoss(loss, n_classes=2)(emb, y, module)
    assert got.dtype == torch.float32
    (grad,) = torch.autograd.grad(got, emb)
    assert grad.dtype == torch.bfloat16
    plain = emb.detach().float().requires_grad_(True)
    expected = InBatchLoss(loss, n_classes=2)(plain, y, module)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    (expected_grad,) = torch.autograd.grad(expected, plain)
    torch.testing.assert_close(grad, expected_grad.bfloat16(), rtol=0, atol=0)
    if loss in ("contrastive", "bce"):
        pairs = RowPairLoss(loss, group_weight=1.0)
        groups = torch.stack([y[:8], torch.arange(8) % 3, torch.arange(8) % 4], 1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            value = pairs((emb[:8], emb[8:]), groups, module)
        assert value.dtype == torch.float32
        value.backward()
