"""A minimal model plugin: product-of-experts posterior, ELBO with a KL weight."""

from torch import Tensor

from mgmvae.base import Batch, MultimodalVAE


class TinyVAE(MultimodalVAE):
    name = "tiny_vae"  # the run name: results/<study>/runs/<dataset>/tiny_vae/, model_settings.tiny_vae
    uses_private = False  # True: the encoders also give a private latent of settings.private_dim

    class Params(MultimodalVAE.Params):  # each parameter: type, default, reason; model_settings.tiny_vae.params
        kl_weight: float = 1.0  # the KL term's weight (1: the ELBO)

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        encoded = self.encode(batch)  # {modality: (q(z | x_m), q(w_m | x_m) or None)}
        q = self.joint_posterior(encoded)  # product of experts with an N(0, I) prior expert
        z = q.rsample()  # the global torch RNG, which the training loop seeds
        recon = {m: self.log_likelihood(m, batch[m], z).mean() for m in encoded}
        kl = q.kl_standard_normal().mean()
        loss = -sum(recon.values()) + self.params["kl_weight"] * kl
        return {"loss": loss, "kl": kl, **{f"recon_{m}": r for m, r in recon.items()}}
