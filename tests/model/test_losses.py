import pytest
import torch
from torch.distributions import Normal, kl_divergence as torch_kl
from torchvision.models import vgg19

from dfc_vae import DFCLoss, UserError, active_units, kl_divergence
from dfc_vae.model.losses import LOSS_LAYERS, LOSS_NAMES, LOSSES, REDUCTIONS, VGGFeatures, load_vgg19_features


def test_kl_matches_torch_distributions():
    mu, logvar = torch.randn(5, 7), torch.randn(5, 7)
    expected = torch_kl(Normal(mu, (0.5 * logvar).exp()), Normal(torch.zeros(7), torch.ones(7))).sum(1)
    torch.testing.assert_close(kl_divergence(mu, logvar), expected)
    assert torch.all(kl_divergence(torch.zeros(2, 3), torch.zeros(2, 3)) == 0)


def test_vgg_taps_equal_torchvision_features_at_1_6_11_20_29():
    torch.manual_seed(0)
    reference = vgg19(weights=None).features.eval()
    taps = VGGFeatures(("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"), weights="random")
    reference.load_state_dict(taps.net.state_dict(), strict=False)
    x = torch.rand(2, 3, 32, 32)
    h = (x - taps.mean) / taps.std  # ImageNet normalization
    expected = []
    with torch.no_grad():
        for i, layer in enumerate(reference):
            h = layer(h.clone())
            if i in (1, 6, 11, 20, 29):
                expected.append(h)
            if i == 29:
                break
        got = taps(x)
    assert len(got) == 5
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e)


def test_vgg_is_frozen_cut_after_the_deepest_tap_and_stays_in_eval():
    taps = VGGFeatures(LOSS_LAYERS["vae123"], weights="random")
    assert len(taps.net) == 12  # features[0..11], relu3_1 is index 11
    assert not any(p.requires_grad for p in taps.parameters())
    taps.train()
    assert not taps.training


def test_vgg_under_bf16_autocast_gives_autocasts_numbers_from_weights_cast_once():
    taps = VGGFeatures(LOSS_LAYERS["vae123"], weights="random")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        h, expected = (x - taps.mean) / taps.std, []
        for i, layer in enumerate(taps.net):  # autocast casting the fp32 weights at each call
            h = layer(h)
            if i in taps.taps:
                expected.append(h)
        got = taps(x)
        cast_copy = taps._cast[1]
        taps(x)
        assert taps._cast[1] is cast_copy  # made once
    for g, e in zip(got, expected):
        assert g.dtype == torch.bfloat16
        torch.testing.assert_close(g, e, rtol=0, atol=0)
    assert taps.net[0].weight.dtype == torch.float32  # the module's own weights stay fp32
    with torch.no_grad():
        assert all(f.dtype == torch.float32 for f in taps(x))  # and serve calls outside autocast


def test_random_vgg_weights_are_the_same_every_time():
    a, _ = load_vgg19_features("random")
    b, desc = load_vgg19_features("random")
    assert desc == "random"
    torch.testing.assert_close(a[0].weight, b[0].weight)


def test_loss_is_per_image_sum_averaged_over_batch():
    loss = DFCLoss("pvae", alpha=1.0, beta=0.5)
    x = torch.zeros(2, 3, 4, 4)
    recon = torch.full_like(x, 0.5)
    mu, logvar = torch.zeros(2, 3), torch.zeros(2, 3)
    out = loss(x, recon, mu, logvar)
    assert out["recon"].item() == pytest.approx(48 * 0.25)  # 48 pixels of squared error 0.25, per image
    assert out["kl"].item() == 0
    assert out["loss"].item() == pytest.approx(0.5 * 12)


def test_feature_loss_gradients_reach_the_reconstruction_only():
    loss = DFCLoss("vae345", vgg_weights="random")
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    recon = torch.rand(2, 3, 32, 32, requires_grad=True)
    out = loss(x, recon, torch.zeros(2, 4), torch.zeros(2, 4))
    out["loss"].backward()
    assert recon.grad is not None and recon.grad.abs().sum() > 0
    assert x.grad is None  # the target's features are computed without grad


def test_chunked_feature_loss_on_cpu_equals_one_pass_over_the_batch(monkeypatch):
    """On a CPU the training loss runs VGG forward and backward in chunks of images; the loss and the
    gradient that reaches the reconstruction are those of one pass over the whole batch."""
    import dfc_vae.model.losses as losses

    torch.manual_seed(0)
    loss = DFCLoss("vae123", vgg_weights="random")
    x = torch.rand(7, 3, 32, 32)
    results = []
    for chunk_images in (3, 7):  # 3, 3 and 1 images; then the whole batch at once
        monkeypatch.setattr(losses, "CPU_CHUNK_BYTES", chunk_images * 64 * 4 * 32 * 32)
        assert losses._images_per_chunk(x) == chunk_images
        recon = x.flip(3).clone().requires_grad_()
        (value := loss.reconstruction(x, recon, per_image=False)).backward()
        results.append((value.detach(), recon.grad))
    (chunked, chunked_grad), (whole, whole_grad) = results
    torch.testing.assert_close(chunked, whole, rtol=2e-5, atol=0)  # float sums in another order
    torch.testing.assert_close(chunked_grad, whole_grad)
    assert chunked_grad.abs().sum() > 0
    torch.testing.assert_close(chunked, loss.reconstruction(x, x.flip(3)).mean(), rtol=2e-5, atol=0)  # per image (eval)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_every_losss_training_path_equals_its_plain_definition(name, reduction, monkeypatch):
    """Training's batch mean (the loss's fast batch sum: in place, and chunked on a CPU, here into 2, 2
    and 1 images, or in one pass) is the batch mean of its per-image definition, with the same
    gradient for the reconstruction, up to the order of fp32 sums."""
    import dfc_vae.model.losses as losses

    torch.manual_seed(0)
    loss = DFCLoss(name, vgg_weights="random", reduction=reduction)
    x = torch.rand(5, 3, 32, 32)
    recon = (0.7 * x + 0.3 * torch.rand_like(x)).requires_grad_()
    plain = LOSSES[name].per_image(loss.vgg, x, recon, reduction).mean()
    (plain_grad,) = torch.autograd.grad(plain, recon)
    for chunk_images in (2, 5):
        monkeypatch.setattr(losses, "CPU_CHUNK_BYTES", chunk_images * 64 * 4 * 32 * 32)
        r = recon.detach().clone().requires_grad_()
        (fast := loss.reconstruction(x, r, per_image=False)).backward()
        torch.testing.assert_close(fast, plain.detach(), rtol=2e-5, atol=0)
        torch.testing.assert_close(r.grad, plain_grad, rtol=2e-5, atol=2e-5 * plain_grad.abs().max().item())


def test_a_loss_is_one_registry_entry_and_without_a_fast_path_trains_on_its_definition(monkeypatch):
    import dfc_vae.model.losses as losses

    assert LOSS_NAMES == tuple(LOSSES) == ("vae123", "vae345", "pvae")
    assert LOSS_LAYERS == {name: LOSSES[name].layers for name in LOSS_NAMES}
    monkeypatch.setitem(LOSSES, "pixels_plain", losses.ReconstructionLoss("pixels_plain", (), losses.pixel_loss))
    x, recon = torch.rand(3, 3, 8, 8), torch.rand(3, 3, 8, 8)
    plain = DFCLoss("pixels_plain", reduction="paper")
    assert plain.vgg is None
    torch.testing.assert_close(plain.reconstruction(x, recon, per_image=False),
                               DFCLoss("pvae", reduction="paper").reconstruction(x, recon).mean())


def test_active_units_counts_dimensions_that_vary():
    mu = torch.zeros(100, 5)
    mu[:, 0] = torch.randn(100)  # varies a lot
    mu[:, 1] = 0.01 * torch.randn(100)  # variance 1e-4: collapsed
    assert active_units(mu) == 1


def test_unknown_loss_and_missing_weights_file_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="vae123, vae345, pvae"):
        DFCLoss("vae999")
    with pytest.raises(UserError, match="no such file"):
        DFCLoss("vae123", vgg_weights=str(tmp_path / "missing.pth"))


def test_unreachable_imagenet_weights_say_where_to_put_the_file(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # an empty cache
    with pytest.raises(UserError) as e:
        load_vgg19_features("imagenet")
    msg = str(e.value)
    assert "vgg19-dcbb9e9d.pth" in msg and "--vgg-weights random" in msg and str(tmp_path / "hub" / "checkpoints") in msg


def test_imagenet_weights_come_from_torch_hubs_cache(monkeypatch, tmp_path):
    torch.manual_seed(2)
    net = vgg19(weights=None)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(net.state_dict(), tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    features, desc = load_vgg19_features("imagenet")
    torch.testing.assert_close(features[34].weight, net.features[34].weight)
    assert desc.startswith("imagenet")


def test_local_weights_file_is_loaded(tmp_path):
    torch.manual_seed(1)
    net = vgg19(weights=None)
    torch.save(net.state_dict(), tmp_path / "vgg19.pth")
    features, desc = load_vgg19_features(str(tmp_path / "vgg19.pth"))
    torch.testing.assert_close(features[0].weight, net.features[0].weight)
    assert desc.startswith("file ")


def test_our_vgg19_layers_are_torchvisions_and_a_truncated_one_loads_a_full_file(tmp_path):
    from dfc_vae.model.losses import _vgg19_feature_layers

    ours, theirs = _vgg19_feature_layers(), vgg19(weights=None).features
    assert [repr(m) for m in ours] == [repr(m) for m in theirs]  # same modules at the same indices
    torch.manual_seed(3)
    net = vgg19(weights=None)
    torch.save(net.state_dict(), tmp_path / "vgg19.pth")
    features, _ = load_vgg19_features(str(tmp_path / "vgg19.pth"), upto=11)  # VAE-123 stops at relu3_1
    assert len(features) == 12
    torch.testing.assert_close(features[10].weight, net.features[10].weight)
    # random weights do not depend on where the network is cut
    full, _ = load_vgg19_features("random")
    cut, _ = load_vgg19_features("random", upto=11)
    torch.testing.assert_close(cut[10].weight, full[10].weight)


def test_paper_reduction_is_a_per_element_mean_on_caffe_scale_features():
    """--reduction paper: each layer's squared difference averaged over its C x H x W elements and
    multiplied by the squared Caffe/torchvision feature ratio; the pixel loss a mean on 0-255 pixels."""
    from dfc_vae.model.losses import CAFFE_FEATURE_SCALE

    torch.manual_seed(0)
    x, recon = torch.rand(3, 3, 32, 32), torch.rand(3, 3, 32, 32)
    paper = DFCLoss("vae123", vgg_weights="random", reduction="paper")
    with torch.no_grad():
        by_hand = sum(CAFFE_FEATURE_SCALE ** 2 * (a - t).pow(2).flatten(1).mean(1)
                      for a, t in zip(paper.vgg(recon), paper.vgg(x)))
        torch.testing.assert_close(paper.reconstruction(x, recon), by_hand)
        pixels = DFCLoss("pvae", reduction="paper").reconstruction(x, recon)
        torch.testing.assert_close(pixels, (255 * (recon - x)).pow(2).flatten(1).mean(1))
    # the training path (one sum over the batch, chunked on a CPU) gives the batch mean of the same numbers
    r = recon.clone().requires_grad_()
    torch.testing.assert_close(paper.reconstruction(x, r, per_image=False), by_hand.mean(), rtol=2e-5, atol=0)
    # and against the default per-image sums, the KL weighs C*H*W / scale^2 times more per layer
    total = DFCLoss("vae123", vgg_weights="random").reconstruction(x, recon)
    assert (total > 2 * paper.reconstruction(x, recon)).all()


def test_caffe_feature_scale_is_the_ratio_of_caffe_to_torchvision_features():
    """Caffe's VGG saw 255 * (x - mean) (0-255 pixels minus the channel means); torchvision's sees
    (x - mean) / std. With bias-free weights the relu1_1 features differ by 255 * std per channel,
    which the single CAFFE_FEATURE_SCALE matches to within the channels' 2% spread."""
    from dfc_vae.model.losses import CAFFE_FEATURE_SCALE, IMAGENET_MEAN, IMAGENET_STD, load_vgg19_features

    net, _ = load_vgg19_features("random", upto=1)  # conv1_1 (bias 0) and relu1_1
    x = torch.rand(4, 3, 32, 32)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        caffe = net(255 * (x - mean))
        torchvision = net((x - mean) / std)
    ratio = caffe.norm() / torchvision.norm()
    assert abs(ratio / CAFFE_FEATURE_SCALE - 1) < 0.02


def test_unknown_reduction_is_a_user_error():
    with pytest.raises(UserError, match="sum, paper"):
        DFCLoss("pvae", reduction="mean")

