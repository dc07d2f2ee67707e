"""core/field/render: ray/box slabs, alpha compositing, rendering an analytic density, stop-gradient
of the feature branch into geometry (real FeatureField)."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from n3f_ros.core.camera import PinholeCamera
from n3f_ros.core.field.model import FeatureField, FieldConfig
from n3f_ros.core.field.render import RenderSettings, composite, ray_box, render_image, render_rays

RED = (1.0, 0.0, 0.0)
WALL = 0.5      # world z of the slab's front face


pytestmark = pytest.mark.usefixtures('torch_single_thread_seeded')


class SlabField(nn.Module):
    """Duck-typed FeatureField: density ``sigma`` where z > WALL inside the bounds, 0 elsewhere, red;
    features (z, 1, 0, ...) so that a composited feature tells where it was taken."""

    def __init__(self, sigma=1e4, bounds=((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0)), feature_dim=4):
        super().__init__()
        self.register_buffer('bounds', torch.tensor(bounds, dtype=torch.float32))
        self.config = SimpleNamespace(feature_dim=feature_dim)
        self.sigma = sigma
        self.feature_calls = 0

    @property
    def device(self):
        return self.bounds.device

    def density(self, x):
        inside = ((x >= self.bounds[0]) & (x <= self.bounds[1])).all(-1)
        return torch.where(inside & (x[:, 2] > WALL), torch.full_like(x[:, 0], self.sigma),
                           torch.zeros_like(x[:, 0]))

    def geometry(self, x):
        rgb = torch.tensor(RED).expand(len(x), 3)
        return self.density(x), rgb, x.clone()

    def features(self, x, enc):
        self.feature_calls += len(x)
        f = torch.zeros(len(x), self.config.feature_dim)
        f[:, 0] = x[:, 2]
        f[:, 1] = 1.0
        return f


def rays_forward(dirs_xy=((0.0, 0.0),)):
    d = torch.tensor([[dx, dy, 1.0] for dx, dy in dirs_xy])
    return torch.zeros_like(d), d


# --- ray_box ------------------------------------------------------------------------------------

def test_ray_box_analytic():
    bounds = torch.tensor([[-1.0, -2.0, 0.0], [1.0, 2.0, 4.0]])
    o = torch.tensor([[-3.0, 0.0, 1.0], [0.0, 0.0, 2.0], [0.0, 0.0, -2.0], [5.0, 5.0, 5.0], [0.0, 3.0, 1.0]])
    d = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.5, 1.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    near, far, hit = ray_box(o, d, bounds)
    assert hit.tolist() == [True, True, True, False, False]
    torch.testing.assert_close(near[:3], torch.tensor([2.0, -2.0, 2.0]))
    torch.testing.assert_close(far[:3], torch.tensor([4.0, 2.0, 4.0]))


# --- composite ----------------------------------------------------------------------------------

def test_composite_weights_sum_to_one_minus_transmittance():
    g = torch.Generator().manual_seed(1)
    n, s = 64, 20
    t, _ = torch.sort(torch.rand(n, s, generator=g) * 3 + 0.1, -1)
    sigma = torch.rand(n, s, generator=g) * torch.tensor([0.0, 0.5, 5.0, 50.0]).repeat(16)[:, None]
    dn = 1 + torch.rand(n, generator=g)
    far = t[:, -1] + 0.2
    w = composite(sigma, t, dn, far)
    assert w.shape == (n, s)
    assert (w >= 0).all()
    acc = w.sum(-1)
    assert (acc <= 1 + 1e-6).all()
    delta = torch.cat([t[:, 1:] - t[:, :-1], (far - t[:, -1])[:, None]], -1)
    expected = 1 - torch.exp(-(sigma * delta).sum(-1) * dn)     # optical depth along metric length
    torch.testing.assert_close(acc, expected, atol=1e-5, rtol=1e-4)
    assert acc[0::4].abs().max() < 1e-7        # zero density: transparent
    assert acc[3::4].min() > 0.999             # dense: opaque


def test_composite_front_surface_occludes():
    t = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    sigma = torch.tensor([[0.0, 1e4, 1e4, 0.0]])
    w = composite(sigma, t, torch.ones(1), torch.tensor([5.0]))
    torch.testing.assert_close(w, torch.tensor([[0.0, 1.0, 0.0, 0.0]]), atol=1e-6, rtol=0)


# --- render_rays on an analytic slab ---------------------------------------------------------------

def test_opaque_slab_depth_colour_opacity():
    field = SlabField()
    o, d = rays_forward([(0, 0), (0.3, -0.2), (-0.5, 0.4)])
    st = RenderSettings(n_uniform=32, n_extra=8)
    spacing = (1.0 - st.near) / st.n_uniform
    for perturb in (False, True):
        out = render_rays(field, o, d, st, perturb=perturb)
        torch.testing.assert_close(out.acc, torch.ones(3), atol=1e-4, rtol=0)
        torch.testing.assert_close(out.rgb, torch.tensor([RED] * 3), atol=1e-4, rtol=0)
        # t is z-depth: every ray meets the plane z = WALL at t = WALL, whatever its direction
        assert ((out.depth - WALL) >= -1e-4).all()
        assert ((out.depth - WALL) <= spacing).all()
        # the composited feature is the surface's (z = depth), normalised by opacity
        torch.testing.assert_close(out.feat[:, 0], out.depth, atol=1e-3, rtol=0)
        torch.testing.assert_close(out.feat[:, 1], torch.ones(3), atol=1e-3, rtol=0)


def test_depth_guided_samples_are_more_accurate_than_uniform():
    field = SlabField()
    o, d = rays_forward([(0.0, 0.0), (0.2, 0.1), (-0.3, 0.3), (0.1, -0.4)])
    st = RenderSettings(n_uniform=16, n_extra=12, depth_sigma=0.01)
    guided = render_rays(field, o, d, st, depth=torch.full((4,), WALL), perturb=False)
    importance = render_rays(field, o, d, st, depth=None, perturb=False)
    uniform = render_rays(field, o, d, RenderSettings(n_uniform=16, n_extra=0), perturb=False)
    err_g = (guided.depth - WALL).abs().max()
    err_i = (importance.depth - WALL).abs().max()
    err_u = (uniform.depth - WALL).abs().max()
    assert err_g < 2.5 * st.depth_sigma / st.n_extra * 2
    assert err_g < err_i <= err_u
    assert err_u <= (1.0 - st.near) / 16


def test_depth_guided_and_unknown_depth_rays_in_one_batch():
    field = SlabField()
    o, d = rays_forward([(0.0, 0.0)] * 4)
    depth = torch.tensor([WALL, 0.0, WALL, -1.0])       # <= 0: unknown, falls back to importance
    out = render_rays(field, o, d, RenderSettings(n_uniform=16, n_extra=12), depth=depth, perturb=False)
    torch.testing.assert_close(out.acc, torch.ones(4), atol=1e-4, rtol=0)
    assert ((out.depth - WALL).abs() < 0.07).all()
    assert (out.depth[[0, 2]] - WALL).abs().max() < (out.depth[[1, 3]] - WALL).abs().min()


def test_semi_transparent_medium_uses_metric_path_length():
    # homogeneous medium from z = WALL to the box face z = 1: acc = 1 - exp(-sigma * length)
    sigma = 2.0
    field = SlabField(sigma=sigma)
    o, d = rays_forward([(0.0, 0.0), (0.5, 0.0), (0.6, -0.6)])
    st = RenderSettings(n_uniform=64, n_extra=16, depth_sigma=0.002)
    out = render_rays(field, o, d, st, depth=torch.full((3,), WALL), perturb=False)
    length = (1.0 - WALL) * d.norm(dim=-1)
    expected = 1 - torch.exp(-sigma * length)
    torch.testing.assert_close(out.acc, expected, atol=5e-3, rtol=0)
    # opacity-normalised feature: the medium's own value (1) even though acc < 1
    torch.testing.assert_close(out.feat[:, 1], torch.ones(3), atol=1e-3, rtol=0)
    assert (out.feat[:, 0] > WALL).all() and (out.feat[:, 0] < 1.0).all()


def test_rays_missing_the_box_are_empty():
    field = SlabField()
    o = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, 3.0], [0.0, -5.0, 0.0]])
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 0.0, 1.0]])
    for depth in (None, torch.full((3,), 1.0)):
        out = render_rays(field, o, d, RenderSettings(), depth=depth, perturb=True)
        for v in (out.acc, out.depth, out.rgb, out.feat):
            assert torch.isfinite(v).all()
            assert v.abs().max() == 0


def test_features_only_evaluated_where_weights_matter():
    field = SlabField()
    o, d = rays_forward([(0.0, 0.0)] * 8)
    st = RenderSettings(n_uniform=32, n_extra=8)
    render_rays(field, o, d, st, perturb=False)
    # an opaque surface: only the first sample behind it carries weight
    assert 0 < field.feature_calls <= 2 * 8
    field.feature_calls = 0
    out = render_rays(field, o, d, st, perturb=False, with_features=False)
    assert out.feat is None and field.feature_calls == 0


def test_render_image_depth_is_z_depth():
    field = SlabField()
    cam = PinholeCamera(fx=10.0, fy=10.0, cx=6.0, cy=4.0, width=12, height=8)
    st = RenderSettings(n_uniform=64, n_extra=16)
    res = render_image(field, cam, np.eye(4), st)
    assert res['rgb'].shape == (8, 12, 3) and res['depth'].shape == (8, 12) and res['acc'].shape == (8, 12)
    assert res['feat'].shape == (8, 12, 4)
    np.testing.assert_allclose(res['acc'], 1.0, atol=1e-4)
    np.testing.assert_allclose(res['rgb'], np.broadcast_to(RED, (8, 12, 3)), atol=1e-4)
    # corner rays are ~1.07x longer than the axis: range would be visibly larger than WALL there
    assert np.abs(res['depth'] - WALL).max() < 0.02
    small = render_image(field, cam, np.eye(4), st, width=6, with_features=False)
    assert small['rgb'].shape == (4, 6, 3) and 'feat' not in small
    assert small['camera'].size == (6, 4)


def test_render_image_from_a_posed_camera():
    # camera at z = -0.5 looking along +z: the wall is 1 m in front of it
    field = SlabField()
    cam = PinholeCamera(fx=8.0, fy=8.0, cx=4.0, cy=3.0, width=8, height=6)
    T = np.eye(4)
    T[2, 3] = -0.5
    res = render_image(field, cam, T, RenderSettings(n_uniform=64, n_extra=16))
    np.testing.assert_allclose(res['acc'], 1.0, atol=1e-4)
    assert np.abs(res['depth'] - 1.0).max() < 0.03


# --- stop-gradient with the real FeatureField ----------------------------------------------------

def small_field():
    torch.manual_seed(0)
    cfg = FieldConfig(feature_dim=8, geo_levels=4, geo_log2_table=12, geo_max_resolution=64, feat_levels=3,
                      feat_log2_table=10, feat_max_resolution=32, hidden=16, geo_features=3)
    field = FeatureField(np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]), cfg)
    with torch.no_grad():      # some density so that weights are not all tiny
        field.geo_grid.table.uniform_(-1, 1)
        field.density_head[-1].bias[0] = 1.0
    return field


def geometry_params(field):
    return [('geo_grid.' + n, p) for n, p in field.geo_grid.named_parameters()] + \
        [('density_head.' + n, p) for n, p in field.density_head.named_parameters()] + \
        [('color_head.' + n, p) for n, p in field.color_head.named_parameters()]


def feature_params(field):
    return [('feat_grid.' + n, p) for n, p in field.feat_grid.named_parameters()] + \
        [('feature_head.' + n, p) for n, p in field.feature_head.named_parameters()]


def _render_small(field):
    g = torch.Generator().manual_seed(0)
    n = 64
    o = torch.zeros(n, 3)
    o[:, 2] = -0.9
    d = torch.cat([torch.rand(n, 2, generator=g) - 0.5, torch.ones(n, 1)], -1)
    depth = torch.where(torch.arange(n) % 2 == 0, torch.full((n,), 1.0), torch.zeros(n))
    return render_rays(field, o, d, RenderSettings(n_uniform=12, n_extra=6), depth=depth, perturb=True)


def test_feature_loss_does_not_reach_geometry():
    field = small_field()
    out = _render_small(field)
    target = torch.randn_like(out.feat)
    ((out.feat - target) ** 2).mean().backward()
    for name, p in geometry_params(field):
        assert p.grad is None or p.grad.abs().max() == 0, name
    for name, p in feature_params(field):
        assert p.grad is not None and p.grad.abs().max() > 0, name


def test_colour_and_depth_loss_reach_geometry_not_features():
    # control for the test above: the geometry parameters do receive gradients through rgb/depth
    field = small_field()
    out = _render_small(field)
    (out.rgb.square().mean() + out.depth.mean()).backward()
    for name, p in geometry_params(field):
        assert p.grad is not None and p.grad.abs().max() > 0, name
    for name, p in feature_params(field):
        assert p.grad is None or p.grad.abs().max() == 0, name


def test_field_forward_feature_branch_is_detached_from_geometry():
    field = small_field()
    x = torch.rand(200, 3) * 2 - 1
    sigma, rgb, feat = field(x)
    assert sigma.shape == (200,) and rgb.shape == (200, 3) and feat.shape == (200, 8)
    feat.square().sum().backward()
    for name, p in geometry_params(field):
        assert p.grad is None or p.grad.abs().max() == 0, name
    assert field.feat_grid.table.grad.abs().max() > 0


def test_real_field_is_transparent_outside_its_bounds():
    field = small_field()
    o = torch.tensor([[3.0, 3.0, 0.0], [0.0, 0.0, -3.0]])
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    out = render_rays(field, o, d, RenderSettings(), perturb=False)
    assert out.acc[0] == 0 and out.depth[0] == 0
    assert out.acc[1] > 0                       # enters the box: the random field has density
    assert out.depth[1] / out.acc[1] >= 2.0 - 1e-4    # nothing before the box face at t = 2
    assert torch.isfinite(out.feat).all()
