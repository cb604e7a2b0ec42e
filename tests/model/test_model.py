import pytest
import torch
from torch import nn

from dfc_vae import DFCVAE, ModelConfig, UserError
from dfc_vae.model.losses import kl_divergence


@pytest.mark.parametrize("size,stages", [(32, 3), (64, 4), (128, 5), (256, 6)])
def test_shapes_at_each_image_size(size, stages):
    model = DFCVAE(ModelConfig(image_size=size))
    x = torch.rand(3, 3, size, size)
    recon, mu, logvar = model(x)
    assert recon.shape == x.shape
    assert mu.shape == logvar.shape == (3, 100)
    assert model.config.widths == tuple(32 * 2**i for i in range(stages))
    assert model.decode(torch.zeros(2, 100)).shape == (2, 3, size, size)


def test_paper_architecture_at_64():
    model = DFCVAE()
    convs = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == [
        (3, 32, (4, 4), (2, 2), (1, 1)), (32, 64, (4, 4), (2, 2), (1, 1)),
        (64, 128, (4, 4), (2, 2), (1, 1)), (128, 256, (4, 4), (2, 2), (1, 1))]
    dec = [m for m in model.decoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in dec] == [
        (256, 128, (3, 3)), (128, 64, (3, 3)), (64, 32, (3, 3)), (32, 3, (3, 3))]
    bns = [m for m in model.decoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 3 and all(b.eps == 1e-3 for b in bns)  # no BatchNorm on the RGB output
    assert isinstance(model.decoder[-1][-1], torch.nn.Conv2d)  # and no output activation


def test_official_initialization():
    torch.manual_seed(0)
    model = DFCVAE()
    w = torch.cat([m.weight.flatten() for m in model.modules() if isinstance(m, torch.nn.Conv2d)])
    assert abs(w.std().item() - 0.02) < 0.002 and abs(w.mean().item()) < 0.002
    bn = torch.cat([m.weight for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)])
    assert abs(bn.mean().item() - 1.0) < 0.01 and bn.std().item() < 0.05
    assert all(m.bias.abs().sum() == 0 for m in model.modules() if isinstance(m, torch.nn.Conv2d))


def test_eval_mode_output_does_not_depend_on_the_rest_of_the_batch():
    # the official code kept BatchNorm in training mode at inference; we don't
    model = DFCVAE(ModelConfig(image_size=32)).eval()
    x = torch.rand(8, 3, 32, 32)
    with torch.no_grad():
        alone = model.encode(x[:1])[0]
        in_batch = model.encode(x)[0][:1]
    torch.testing.assert_close(alone, in_batch, rtol=1e-4, atol=1e-5)


def test_reparameterize_uses_the_noise_passed_in_or_draws_its_own():
    mu, logvar, eps = torch.randn(4, 6), torch.randn(4, 6), torch.randn(4, 6)
    assert torch.equal(DFCVAE.reparameterize(mu, logvar, eps), mu + torch.exp(0.5 * logvar) * eps)
    torch.manual_seed(7)
    drawn = DFCVAE.reparameterize(mu, logvar)
    torch.manual_seed(7)
    assert torch.equal(drawn, mu + torch.exp(0.5 * logvar) * torch.randn_like(mu))


def test_the_training_step_is_the_models_forward_pass_with_the_noise_passed_in():
    from dfc_vae.training.step import TrainStep

    model = DFCVAE(ModelConfig(image_size=32, latent_dim=8))
    x, eps = torch.rand(3, 3, 32, 32), torch.randn(3, 8)
    recon, mu, logvar = TrainStep(model)(x, eps)
    raw_mu, raw_logvar = model.encode_raw(x)  # training sees the raw latent
    assert torch.equal(mu, raw_mu) and torch.equal(logvar, raw_logvar)
    assert torch.equal(recon, model.decode_raw(mu + torch.exp(0.5 * logvar) * eps))


def test_unsupported_size_is_a_user_error():
    with pytest.raises(UserError, match="32, 64, 128"):
        ModelConfig(image_size=48)


def test_save_and_load_pretrained_round_trip(tmp_path):
    model = DFCVAE(ModelConfig(image_size=32, latent_dim=8)).eval()
    model.save_pretrained(tmp_path / "m")
    loaded = DFCVAE.from_pretrained(tmp_path / "m")
    assert loaded.config == model.config and not loaded.training
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(x)[0], model.encode(x)[0])
    with pytest.raises(UserError, match="export"):
        DFCVAE.from_pretrained(tmp_path / "nothing")


def test_latent_calibration_standardizes_the_posteriors_and_leaves_reconstructions_alone():
    torch.manual_seed(0)
    model = DFCVAE(ModelConfig(image_size=32, latent_dim=8)).eval()
    with torch.no_grad():  # an uncalibrated-looking latent: shifted and spread unevenly
        model.fc_mu.bias.copy_(torch.linspace(-2, 2, 8))
        model.fc_mu.weight.mul_(torch.linspace(0.5, 40, 8)[:, None])
    x = torch.rand(64, 3, 32, 32)
    with torch.no_grad():
        raw = model.encode_raw(x)
        assert all(torch.equal(a, b) for a, b in zip(model.encode(x), raw))  # identity until fitted
        before = model.decode(model.encode(x)[0])
        kl_before = kl_divergence(*raw).mean()
        model.calibrate_latent(*raw)
        mu, logvar = model.encode(x)
        torch.testing.assert_close(mu.mean(0), torch.zeros(8), atol=1e-5, rtol=0)
        torch.testing.assert_close((mu ** 2 + logvar.exp()).mean(0), torch.ones(8), atol=1e-4, rtol=0)
        torch.testing.assert_close(model.decode(mu), before, atol=1e-4, rtol=1e-4)  # the decoder undoes the map
        torch.testing.assert_close(model(x)[1], raw[0])  # training still sees the raw latent
    assert kl_divergence(mu, logvar).mean() < kl_before


def test_a_model_saved_before_the_calibration_loads_with_the_identity():
    model = DFCVAE(ModelConfig(image_size=32, latent_dim=8))
    old = {k: v for k, v in model.state_dict().items() if not k.startswith("latent_")}
    fresh = DFCVAE(ModelConfig(image_size=32, latent_dim=8))
    fresh.latent_scale.fill_(3.0)
    fresh.load_state_dict(old)
    assert torch.equal(fresh.latent_scale, torch.ones(8)) and torch.equal(fresh.latent_shift, torch.zeros(8))


@pytest.mark.parametrize("compiling", [False, True])
def test_edge_pad_is_replication_padding_forward_and_backward(compiling, monkeypatch):
    """Eagerly and in the torch.cat form that a torch.compile graph gets."""
    from dfc_vae.model.network import EdgePad

    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: compiling)
    x = torch.randn(2, 3, 5, 4).to(memory_format=torch.channels_last).requires_grad_()
    y = x.detach().clone().requires_grad_()
    ours, ref = EdgePad()(x), nn.ReplicationPad2d(1)(y)
    assert torch.equal(ours, ref)
    g = torch.randn_like(ref)
    ours.backward(g)
    ref.backward(g)
    torch.testing.assert_close(x.grad, y.grad)
