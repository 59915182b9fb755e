"""The baseline models, one module each; ``mgmvae.registry.BUILTINS`` lists their classes."""
