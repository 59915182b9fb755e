"""The shared encoders and decoders."""

import torch


def test_chunked_cpu_networks_match_one_call():
    """The CPU chunking of the convolutional nets changes speed, not values or gradients."""
    from mgmvae import nets

    torch.manual_seed(0)
    enc, dec = nets.Encoder(nets.CNN_SHAPE, 4, 2), nets.Decoder(nets.CNN_SHAPE, 6)
    x = torch.rand(300, *nets.CNN_SHAPE)
    z = torch.randn(2, 150, 6, requires_grad=True)
    chunked = (enc(x).shared_loc, dec(z))
    grad_chunked = torch.autograd.grad(chunked[1].square().sum(), z)[0]
    whole = (enc.head(enc.body(x))[:, :4], dec.net(z.reshape(-1, 6)).reshape(2, 150, *nets.CNN_SHAPE))
    grad_whole = torch.autograd.grad(whole[1].square().sum(), z)[0]
    assert len(x) > nets.CPU_CHUNK
    for a, b in zip(chunked, whole, strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)
    assert torch.allclose(grad_chunked, grad_whole, atol=1e-5, rtol=1e-5)


def test_bfloat16_nets_hand_back_float32_close_to_float32():
    """precision=bfloat16 runs the matrix work in bf16 (values move) but returns float32 outputs
    and float32 parameter gradients, within bf16's relative error of the float32 nets."""
    from mgmvae import nets

    torch.manual_seed(0)
    for shape in (nets.MLP_SHAPE, nets.CNN_SHAPE):
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
    import pytest

    from mgmvae import nets

    with pytest.raises(ValueError, match="float16.*float32, bfloat16"):
        nets.compute_dtype("float16")
