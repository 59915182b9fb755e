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
    for a, b in zip(chunked, whole):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)
    assert torch.allclose(grad_chunked, grad_whole, atol=1e-5, rtol=1e-5)
