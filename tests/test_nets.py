"""The shared encoders and decoders."""

import pytest
import torch


@pytest.mark.parametrize("shape", [(3, 32, 32), (3, 28, 28)])
def test_chunked_cpu_networks_match_one_call(shape):
    """The CPU chunking of the convolutional nets changes speed, not values or gradients."""
    from mgmvae import nets

    torch.manual_seed(0)
    enc, dec = nets.Encoder(shape, 4, 2), nets.Decoder(shape, 6)
    x = torch.rand(300, *shape)
    z = torch.randn(2, 150, 6, requires_grad=True)
    chunked = (enc(x).shared_loc, dec(z))
    grad_chunked = torch.autograd.grad(chunked[1].square().sum(), z)[0]
    whole = (enc.head(enc.body(x))[:, :4], dec.net(z.reshape(-1, 6)).reshape(2, 150, *shape))
    grad_whole = torch.autograd.grad(whole[1].square().sum(), z)[0]
    assert len(x) > nets.CPU_CHUNK
    for a, b in zip(chunked, whole, strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)
    assert torch.allclose(grad_chunked, grad_whole, atol=1e-5, rtol=1e-5)


def test_polymnist_nets_are_mopoes():
    """3×28×28: MoPoE's EncoderImg/DecoderImg (thomassutter/MoPoE, mmnist/networks/ConvNetworksImgCMNIST.py):
    k3 s2 p1 convolutions 3→32→64→128 (28→14→7→4), Linear(2048, L), ReLU, heads; the decoder back
    to 3×28×28. Parameter counts by hand for shared 20 + private 4 (L = 24)."""
    from mgmvae import nets

    enc, dec = nets.Encoder((3, 28, 28), 20, 4), nets.Decoder((3, 28, 28), 24)
    convs = (3 * 32 * 9 + 32) + (32 * 64 * 9 + 64) + (64 * 128 * 9 + 128)
    assert sum(p.numel() for p in enc.parameters()) == convs + (2048 * 24 + 24) + (24 * 48 + 48)
    deconvs = (128 * 64 * 9 + 64) + (64 * 32 * 9 + 32) + (32 * 3 * 9 + 3)
    assert sum(p.numel() for p in dec.parameters()) == (24 * 2048 + 2048) + deconvs
    maps = []
    for layer in enc.body:
        if isinstance(layer, torch.nn.Conv2d):
            layer.register_forward_hook(lambda module, args, out: maps.append(tuple(out.shape[1:])))
    out = enc(torch.rand(5, 3, 28, 28))
    assert maps == [(32, 14, 14), (64, 7, 7), (128, 4, 4)]
    assert out.shared_loc.shape == (5, 20) and out.private_scale.shape == (5, 4)
    assert dec(torch.randn(2, 5, 24)).shape == (2, 5, 3, 28, 28)


def test_bfloat16_nets_hand_back_float32_close_to_float32():
    """precision=bfloat16 runs the matrix work in bf16 (values move) but returns float32 outputs
    and float32 parameter gradients, within bf16's relative error of the float32 nets."""
    from mgmvae import nets

    torch.manual_seed(0)
    for shape in (nets.MLP_SHAPE, nets.CNN_SHAPE, nets.POLY_SHAPE):
        enc32, dec32 = nets.Encoder(shape, 4, 2), nets.Decoder(shape, 6)
        enc16, dec16 = nets.Encoder(shape, 4, 2, torch.bfloat16), nets.Decoder(shape, 6, torch.bfloat16)
        enc16.load_state_dict(enc32.state_dict())
        dec16.load_state_dict(dec32.state_dict())
        x, z = torch.rand(16, *shape), torch.randn(3, 16, 6)
        ref, low = (enc32(x).shared_loc, dec32(z)), (enc16(x).shared_loc, dec16(z))
        for a, b in zip(ref, low, strict=True):
            assert b.dtype == torch.float32 and b.shape == a.shape
            assert not torch.equal(a, b)  # autocast really ran in bf16
            assert (a - b).abs().max() <= 0.03 * a.abs().max()
        dec16(z).sum().backward()
        assert all(p.grad.dtype == torch.float32 for p in dec16.parameters())


def test_unknown_precision_is_named():
    from mgmvae import nets

    with pytest.raises(ValueError, match="float16.*float32, tf32, bfloat16"):
        nets.compute_dtype("float16")
