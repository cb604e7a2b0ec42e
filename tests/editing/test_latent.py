"""Latent operations: the paper's interpolation and attribute arithmetic."""

import torch

from dfc_vae.editing.latent import add_attributes, default_alphas, interpolate, lerp, slerp, walk


def test_default_alphas_are_the_papers():
    assert torch.allclose(default_alphas(), torch.tensor([i / 10 for i in range(11)]))


def test_lerp_ends_are_the_endpoints_and_midpoint_is_the_mean():
    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(3, 100, generator=g), torch.randn(3, 100, generator=g)
    path = lerp(z0, z1, default_alphas())
    assert path.shape == (3, 11, 100)
    assert torch.equal(path[:, 0], z0) and torch.allclose(path[:, -1], z1)
    assert torch.allclose(path[:, 5], (z0 + z1) / 2, atol=1e-6)


def test_slerp_ends_norms_and_directions():
    g = torch.Generator().manual_seed(1)
    z0, z1 = torch.randn(100, generator=g), torch.randn(100, generator=g)
    path = slerp(z0, z1, default_alphas())
    assert path.shape == (11, 100)
    assert torch.allclose(path[0], z0, atol=1e-5) and torch.allclose(path[-1], z1, atol=1e-5)
    # norms interpolate linearly; the path stays in the plane of z0 and z1
    norms = (1 - default_alphas()) * z0.norm() + default_alphas() * z1.norm()
    assert torch.allclose(path.norm(dim=1), norms, atol=1e-4)
    # unlike lerp, the midpoint keeps the endpoints' typical norm
    assert path[5].norm() > lerp(z0, z1, [0.5])[0].norm()
    # parallel endpoints fall back to lerp instead of dividing by zero
    assert torch.allclose(slerp(z0, 2 * z0, [0.5])[0], 1.5 * z0, atol=1e-5)
    assert torch.allclose(interpolate(z0, z1, [0.3], "spherical"), slerp(z0, z1, [0.3]))


def test_attribute_arithmetic_several_at_once():
    z = torch.zeros(2, 4)
    v = torch.tensor([[1.0, 0, 0, 0], [0, 2.0, 0, 0]])
    out = add_attributes(z, v, [1.0, -0.5])
    assert torch.equal(out, torch.tensor([[1.0, -1.0, 0, 0]] * 2))
    row = walk(torch.ones(4), v[0], default_alphas())
    assert row.shape == (11, 4) and torch.equal(row[0], torch.ones(4)) and row[-1, 0] == 2.0
