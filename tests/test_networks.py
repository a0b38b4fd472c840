"""The encoders and the twin module: ensemble members and how they compare."""

import numpy as np
import pytest
import torch

from sksiamese import _networks
from sksiamese._networks import (
    BatchEnsembleLinear,
    CNNEncoder,
    EnsembleMLPEncoder,
    MemberLinear,
    SiameseModule,
    _head_dissimilarity,
)

DISTANCES = ("euclidean", "manhattan", "cosine")


def _ensemble(distance="euclidean", head=False, k=3, d=4):
    return SiameseModule(
        torch.nn.Identity(), distance, head=head, embedding_dim=k * d, n_members=k
    )


def test_batch_ensemble_linear_is_one_shared_layer_at_unit_scalings():
    """With r = s = 1 every member is the same linear layer."""
    layer = BatchEnsembleLinear(5, 3, n_members=4)
    x = torch.randn(6, 5)
    out = layer(x.expand(4, -1, -1))
    plain = x @ layer.weight.T + layer.bias[0]
    for m in range(4):
        torch.testing.assert_close(out[m], plain)


def test_batch_ensemble_linear_is_the_batch_ensemble_formula():
    """Folded into per-member weights, the layer still computes
    ``((x * r) @ W.T) * s + bias`` for every member."""
    torch.manual_seed(0)
    layer = BatchEnsembleLinear(5, 3, n_members=4, random_signs=True)
    with torch.no_grad():
        layer.s.normal_()
        layer.bias.normal_()
    x = torch.randn(4, 6, 5)
    expected = ((x * layer.r[:, None, :]) @ layer.weight.T) * layer.s[:, None, :]
    torch.testing.assert_close(layer(x), expected + layer.bias[:, None, :])


def test_batch_ensemble_first_layer_members_differ_by_input_signs():
    torch.manual_seed(0)
    layer = BatchEnsembleLinear(50, 3, n_members=4, random_signs=True)
    assert set(layer.r.unique().tolist()) == {-1.0, 1.0}
    assert len({tuple(r.tolist()) for r in layer.r}) == 4
    torch.testing.assert_close(layer.s, torch.ones(4, 3))
    torch.testing.assert_close(layer.bias, layer.bias[:1].expand(4, -1))


def test_member_linear_applies_one_layer_per_member():
    layer = MemberLinear(5, 2, n_members=3)
    x = torch.randn(3, 7, 5)
    out = layer(x)
    for m in range(3):
        torch.testing.assert_close(out[m], x[m] @ layer.weight[m] + layer.bias[m])


@pytest.mark.parametrize("hidden", [(16, 8), ()])
def test_ensemble_encoder_gives_each_member_its_embedding(hidden):
    torch.manual_seed(0)
    enc = EnsembleMLPEncoder(6, hidden, embedding_dim=5, n_members=4)
    out = enc(torch.randn(10, 6))
    assert out.shape == (10, 20)
    members = out.reshape(10, 4, 5)
    # Random input signs make the members different functions from the start.
    assert not torch.allclose(members[:, 0], members[:, 1])
    # Gradients reach every member.
    out.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("head", [False, True])
def test_ensemble_dissimilarity_combines_the_members(distance, head):
    """pairwise, rowwise and smallest on embeddings side by side equal the
    root mean square (euclidean) or the mean (others, the head's logits) of
    the members' own dissimilarities."""
    torch.manual_seed(0)
    module = _ensemble(distance, head)
    a, b = torch.randn(5, 12, dtype=torch.float64), torch.randn(7, 12).double()
    each = torch.stack(
        [
            module.member_pairwise(ma, mb)
            for ma, mb in zip(module.members(a), module.members(b), strict=True)
        ]
    )
    if distance == "euclidean" and not head:
        expected = each.pow(2).mean(0).sqrt()
    else:
        expected = each.mean(0)
    torch.testing.assert_close(module.pairwise(a, b), expected)
    torch.testing.assert_close(
        module.rowwise(a, b[:5]), torch.diagonal(expected[:, :5])
    )
    d, idx = module.smallest(
        module.comparable(a), module.comparable(b), 3, indices=True
    )
    ref, ref_idx = torch.topk(expected, 3, dim=1, largest=False)
    torch.testing.assert_close(d, ref)
    np.testing.assert_array_equal(idx, ref_idx)


def test_one_member_view_compares_a_members_embeddings():
    torch.manual_seed(0)
    module = _ensemble("cosine", head=False)
    a, b = torch.randn(4, 12), torch.randn(6, 12)
    single = module.one_member()
    torch.testing.assert_close(
        single.pairwise(a[:, :4], b[:, :4]),
        module.member_pairwise(module.members(a)[0], module.members(b)[0]),
    )


@pytest.mark.parametrize(
    "weights",
    [[0.5, -1.0, 2.0, 0.0, -0.3, 1.2, -2.0], [1.0] * 7, [-1.0] * 7, [0.0] * 7],
    ids=["both-signs", "positive", "negative", "zero"],
)
@pytest.mark.parametrize("same", [False, True], ids=["two-batches", "one-batch"])
def test_head_dissimilarity_without_the_tensor_of_differences(
    weights, same, monkeypatch
):
    """The head's dissimilarity of every pair of rows, minus its logit on
    the absolute differences, computed from the differences in blocks (as on
    a GPU, here blocks of one row) or as two manhattan distances over each
    sign's own dimensions (as on a CPU), equals the plain formula; so do the
    gradients, also for a batch compared with itself. On a GPU
    (``select=False``) they are written out (``_HeadDissimilarity``); on a
    CPU a weight of exactly 0 gets none (each part is ``|w_d x_d|``, whose
    slope in ``w_d`` at 0 is taken as 0)."""
    monkeypatch.setattr(_networks, "_L1_BLOCK", 5)
    torch.manual_seed(0)
    a = torch.randn(2, 5, 7, dtype=torch.float64, requires_grad=True)
    b = a if same else torch.randn(2, 6, 7, dtype=torch.float64, requires_grad=True)
    w = torch.tensor(weights, dtype=torch.float64, requires_grad=True)
    bias = torch.tensor([0.7], dtype=torch.float64, requires_grad=True)
    inputs = (a, w, bias) if same else (a, b, w, bias)
    expected = -((a[..., :, None, :] - b[..., None, :, :]).abs() @ w + bias)
    grad_out = torch.randn(expected.shape, dtype=torch.float64)
    grads = torch.autograd.grad(expected, inputs, grad_out)
    for select in (False, True):
        with torch.no_grad():  # the values alone: the formula on a GPU
            torch.testing.assert_close(
                _head_dissimilarity(a, b, w, bias, select=select), expected
            )
        got = _head_dissimilarity(a, b, w, bias, select=select)
        assert (got.grad_fn.name() == "_HeadDissimilarityBackward") is not select
        torch.testing.assert_close(got, expected)
        got_grads = torch.autograd.grad(got, inputs, grad_out)
        for g, g_expected in zip(got_grads, grads, strict=True):
            if g.shape != w.shape:
                torch.testing.assert_close(g, g_expected)
        zero = (w == 0) & select
        torch.testing.assert_close(got_grads[-2][~zero], grads[-2][~zero])
        assert (got_grads[-2][zero] == 0).all()


@pytest.mark.parametrize("block", [1 << 25, 30, 1])
def test_head_dissimilarity_gradient_is_autograds(block, monkeypatch):
    """The gradient written out, in blocks of rows, of whole leading entries
    or whole, for leading dimensions that broadcast, and when a batch is
    compared with itself (one sum of signs instead of two)."""
    monkeypatch.setattr(_networks, "_L1_BLOCK", block)
    gen = torch.Generator().manual_seed(0)

    def rand(*shape):
        x = torch.randn(*shape, dtype=torch.float64, generator=gen)
        return x.requires_grad_()

    w, bias = rand(4), rand(1)
    for a, b in (
        (rand(5, 4), rand(3, 4)),
        (rand(2, 5, 4), rand(1, 3, 4)),
        (rand(2, 3, 5, 4), rand(2, 1, 3, 4)),  # two leading dimensions
        (rand(2, 1, 5, 4), rand(1, 3, 3, 4)),
    ):
        assert torch.autograd.gradcheck(
            _networks._HeadDissimilarity.apply, (a, b, w, bias)
        )
    for E in (rand(3, 6, 4), rand(6, 4), rand(6, 3, 4).transpose(0, 1)):
        assert torch.autograd.gradcheck(
            lambda E, w, bias: _networks._HeadDissimilarity.apply(E, E, w, bias),
            (E, w, bias),
        )


@pytest.mark.parametrize(
    "L, n, m, d, block",
    [(8, 6, 6, 4, 1 << 25), (8, 6, 6, 4, 300), (3, 7, 5, 2, 25), (2, 3, 4, 5, 1)],
)
def test_head_blocks_cover_every_pair_once(L, n, m, d, block, monkeypatch):
    """One block of everything when it fits, else blocks of whole leading
    entries when one fits, else of rows of one entry (one row at least);
    together they cover each (entry, row) once, and each block's part of an
    (L, n, ...) tensor is contiguous (the results are written there in
    place)."""
    monkeypatch.setattr(_networks, "_L1_BLOCK", block)
    seen = torch.zeros(L, n, 3, dtype=torch.long)
    blocks = list(_networks._pair_blocks(L, n, m, d))
    assert (blocks == [None]) == (L * n * m * d <= block)
    for b in blocks:
        part = _networks._part(seen, b)
        assert part.is_contiguous()
        assert part.shape[:2].numel() * m * d <= max(block, m * d)
        entries = _networks._part(seen, b, rows=False)
        assert entries.is_contiguous() and len(entries) == len(part)
        part += 1
    assert (seen == 1).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("squared", [False, True])
def test_distances_within_a_training_batch_have_their_gradient_written_out(
    squared, dtype
):
    """The euclidean distances between the rows of one batch that needs
    gradients (a training batch in the in-batch losses) come from one
    autograd function: the same values bit for bit as the formula, and the
    same gradient as autograd's through it, also where rows repeat (no
    gradient below the square root's clamp, as autograd's)."""
    gen = torch.Generator().manual_seed(0)
    module = SiameseModule(torch.nn.Identity(), "euclidean", embedding_dim=4)
    E = torch.randn(3, 9, 4, generator=gen, dtype=dtype)
    E[:, 7] = E[:, 1]
    E.requires_grad_(True)
    D = module.member_pairwise(E, E, squared=squared)
    assert type(D.grad_fn).__name__ == "_SelfEuclideanBackward"
    # Another tensor as the second side: the formula, through autograd.
    other = E.detach().clone().requires_grad_(True)
    expected = module.member_pairwise(E, other, squared=squared)
    assert expected.grad_fn is not None
    assert type(expected.grad_fn).__name__ != "_SelfEuclideanBackward"
    torch.testing.assert_close(D, expected, rtol=0, atol=0)
    G = torch.randn(3, 9, 9, generator=gen, dtype=dtype)
    (grad,) = torch.autograd.grad(D, E, G)
    expected_grad = torch.autograd.grad(expected, (E, other), G)
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {}
    torch.testing.assert_close(grad, expected_grad[0] + expected_grad[1], **tol)
    with torch.no_grad():  # no gradient needed: the formula
        plain = module.member_pairwise(E, E, squared=squared)
    assert plain.grad_fn is None
    torch.testing.assert_close(plain, D.detach(), rtol=0, atol=0)
    if dtype == torch.float32:
        return
    distinct = E.detach()[:, :7].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda e: module.member_pairwise(e, e, squared=squared), (distinct,)
    )


@pytest.mark.parametrize("image_shape", [(1, 12, 12), (3, 8, 10)])
def test_cnn_on_a_cpu_runs_channels_last_with_the_same_values(image_shape):
    # On a CPU the images go through the convolutions stored channels last
    # (oneDNN's faster path); the embeddings and their gradients are those of
    # the same network on images stored as they come, to float32 rounding.
    torch.manual_seed(0)
    encoder = CNNEncoder(image_shape, embedding_dim=8, channels=6)
    x = torch.randn(5, int(np.prod(image_shape)))
    seen = []
    encoder.features[0].register_forward_pre_hook(
        lambda module, args: seen.append(
            args[0].is_contiguous(memory_format=torch.channels_last)
            and args[0].stride(1) == 1
        )
    )
    out = encoder(x)
    assert seen == [True]
    plain = encoder.embed(encoder.features(x.reshape(5, *image_shape)).flatten(1))
    torch.testing.assert_close(out, plain, rtol=1e-5, atol=1e-6)
    grads = torch.autograd.grad(out.square().sum(), encoder.parameters())
    plain_grads = torch.autograd.grad(plain.square().sum(), encoder.parameters())
    for g, p in zip(grads, plain_grads, strict=True):
        torch.testing.assert_close(g, p, rtol=1e-4, atol=1e-5)
