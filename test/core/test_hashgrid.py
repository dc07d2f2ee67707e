"""core/field/hashgrid: multi-resolution hash encoding against an independent plain-torch reference."""
import itertools

import pytest
import torch

from n3f_ros.core.field.hashgrid import HashGrid, _WeightedGather, make_hash_grid

PRIMES = (1, 2654435761, 805459861)


pytestmark = pytest.mark.usefixtures('torch_single_thread_seeded')


def small_grid(**kw):
    args = dict(n_levels=4, n_features=2, log2_table=12, base_resolution=4, max_resolution=48)
    args.update(kw)
    g = HashGrid(**args)
    with torch.no_grad():   # visible table values (the default init is ~1e-4)
        g.table.uniform_(-1.0, 1.0)
    return g


def reference_encoding(grid: HashGrid, table: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Instant-NGP encoding written out corner by corner with int64 maths and plain indexing."""
    T = grid.table_size
    outs = []
    for lvl in range(grid.n_levels):
        r = int(grid.resolution[lvl].item())
        pos = x.clamp(0, 1).double() * r
        p0 = pos.floor().long().clamp(max=r - 1)   # x = 1 is the far face of the last cell (frac = 1)
        frac = pos - p0
        dense = (r + 1) ** 3 <= T
        acc = 0
        for cx, cy, cz in itertools.product((0, 1), repeat=3):
            c = p0 + torch.tensor([cx, cy, cz])
            if dense:
                idx = c[:, 0] + c[:, 1] * (r + 1) + c[:, 2] * (r + 1) ** 2
            else:
                idx = ((c[:, 0] * PRIMES[0]) ^ (c[:, 1] * PRIMES[1]) ^ (c[:, 2] * PRIMES[2])) % (2 ** 32) % T
            w = 1.0
            for a, ca in enumerate((cx, cy, cz)):
                w = w * (frac[:, a] if ca else 1 - frac[:, a])
            acc = acc + w.float()[:, None] * table[lvl * T + idx]
        outs.append(acc)
    return torch.cat(outs, dim=1)


def test_shape_dtype_and_out_dim():
    g = small_grid(n_levels=5, n_features=3)
    x = torch.rand(37, 3)
    y = g(x)
    assert y.shape == (37, 15) == (37, g.out_dim)
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()


def test_empty_input_gives_empty_encoding():
    g = small_grid(n_levels=5, n_features=3)
    assert g(torch.rand(0, 3)).shape == (0, 15)


@pytest.mark.parametrize('kw', [dict(n_levels=0), dict(n_features=0), dict(log2_table=7), dict(log2_table=25)])
def test_invalid_sizes_raise(kw):
    with pytest.raises(ValueError):
        HashGrid(**kw)


def test_has_dense_and_hashed_levels_in_this_set_up():
    g = small_grid()
    # the comparison with the reference below covers both indexing schemes
    assert 0 < g.n_dense < g.n_levels


def test_matches_reference_encoding():
    g = small_grid()
    x = torch.rand(500, 3)
    x[:5] = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.5, 0.25], [0.3, 0.0, 0.7], [0.999999, 0.1, 0.2],
                          [0.5, 0.5, 0.5]])
    with torch.no_grad():
        torch.testing.assert_close(g(x), reference_encoding(g, g.table, x), atol=1e-5, rtol=1e-5)


def test_vertex_of_dense_level_equals_its_table_entry():
    g = small_grid()
    r = int(g.resolution[0])
    ijk = torch.tensor([[0, 0, 0], [1, 2, 3], [r, 0, 1], [r - 1, r, r - 2]])
    x = ijk.float() / r
    with torch.no_grad():
        enc = g(x)[:, :g.n_features]
    idx = ijk[:, 0] + ijk[:, 1] * (r + 1) + ijk[:, 2] * (r + 1) ** 2
    torch.testing.assert_close(enc, g.table.detach()[idx], atol=1e-5, rtol=1e-5)


def test_linear_along_an_axis_within_a_cell():
    g = small_grid(n_levels=1, base_resolution=8, max_resolution=8)
    r = 8
    # along x, from vertex (2, 3, 5) to vertex (3, 3, 5), y and z exactly on the grid lines
    s = torch.linspace(0, 1, 11)
    x = torch.stack([(2 + s) / r, torch.full_like(s, 3 / r), torch.full_like(s, 5 / r)], 1)
    with torch.no_grad():
        enc = g(x)
    a, b = enc[0], enc[-1]
    torch.testing.assert_close(enc, a[None] + s[:, None] * (b - a)[None], atol=1e-5, rtol=1e-5)
    assert (b - a).abs().max() > 1e-2     # not trivially constant


def test_continuity():
    g = small_grid()
    x = torch.rand(400, 3) * 0.98 + 0.01
    delta = 1e-4
    with torch.no_grad():
        e0 = g(x)
        e1 = g(x + delta * torch.randn(400, 3).sign())
        far = g(torch.rand(400, 3))
    # trilinear interpolation of table values in [-1, 1]: |d enc| <= 2 * res * sum |dx_i|
    bound = 2 * float(g.resolution.max()) * 3 * delta
    assert (e1 - e0).abs().max() <= bound * 1.01
    assert (far - e0).abs().max() > 50 * bound    # the bound is not vacuous


def test_weighted_gather_gradient_equals_plain_indexing_reference():
    table = torch.randn(50, 3, dtype=torch.float32)
    idx = torch.randint(0, 50, (400, 8), dtype=torch.int32)      # many repeated rows
    idx[:10] = 7
    w = torch.rand(400, 8)
    up = torch.randn(400, 3)
    t1 = table.clone().requires_grad_(True)
    out = _WeightedGather.apply(t1, idx, w)
    (out * up).sum().backward()
    t2 = table.clone().requires_grad_(True)
    ref = (t2[idx.long()] * w[..., None]).sum(1)
    (ref * up).sum().backward()
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(t1.grad, t2.grad, atol=1e-4, rtol=1e-5)
    assert t1.grad.dtype == torch.float32


def test_grid_gradient_equals_reference_gradient():
    g = small_grid()
    x = torch.rand(300, 3)
    x[:50] = x[0]                 # same point many times: accumulation of repeated indices
    up = torch.randn(300, g.out_dim)
    (g(x) * up).sum().backward()
    table = g.table.detach().clone().requires_grad_(True)
    (reference_encoding(g, table, x) * up).sum().backward()
    assert g.table.grad.abs().sum() > 0
    torch.testing.assert_close(g.table.grad, table.grad, atol=1e-4, rtol=1e-4)


def test_points_at_zero_and_one_and_outside_are_clamped():
    g = small_grid()
    corners = torch.tensor(list(itertools.product((0.0, 1.0), repeat=3)))
    with torch.no_grad():
        y = g(corners)
        torch.testing.assert_close(y, reference_encoding(g, g.table, corners), atol=1e-5, rtol=1e-5)
        # outside the unit cube the encoding is the one of the clamped point
        torch.testing.assert_close(g(corners * 3 - 1), y)


def test_point_at_one_on_a_grid_whose_finest_level_is_dense():
    # two levels, both dense: 9^3 and 16^3 = 4096 entries fit in a 2^12 table
    g = small_grid(n_levels=2, log2_table=12, base_resolution=8, max_resolution=15)
    assert g.n_dense == g.n_levels
    corners = torch.tensor(list(itertools.product((0.0, 1.0), repeat=3)))
    with torch.no_grad():
        torch.testing.assert_close(g(corners), reference_encoding(g, g.table, corners), atol=1e-5, rtol=1e-5)


def test_make_hash_grid_on_cpu_is_a_hash_grid():
    g = make_hash_grid(torch.device('cpu'), n_levels=3, n_features=2, log2_table=10, base_resolution=4,
                       max_resolution=16)
    assert isinstance(g, HashGrid)
    assert g.out_dim == 6


def test_tiny_fit_regresses_a_smooth_function():
    torch.manual_seed(0)
    g = HashGrid(n_levels=4, n_features=2, log2_table=12, base_resolution=4, max_resolution=32)
    head = torch.nn.Linear(g.out_dim, 1)

    def f(x):
        return (torch.sin(6.28 * x[:, 0]) * torch.cos(6.28 * x[:, 1]) + x[:, 2])[:, None]

    x, x_test = torch.rand(1024, 3), torch.rand(512, 3)
    opt = torch.optim.Adam(list(g.parameters()) + list(head.parameters()), lr=2e-2)

    def loss_fn(pts):
        return ((head(g(pts)) - f(pts)) ** 2).mean()

    with torch.no_grad():
        first, first_test = float(loss_fn(x)), float(loss_fn(x_test))
    for _ in range(150):
        opt.zero_grad()
        loss_fn(x).backward()
        opt.step()
    with torch.no_grad():
        last, last_test = float(loss_fn(x)), float(loss_fn(x_test))
    assert last < first / 10
    assert last_test < first_test / 4      # interpolates between training points too
