"""``vae3d``: OPUS-TOMO style 3D convolutional VAE on subtomograms (see
:mod:`tomohet.methods.vae3d.method`)."""

from tomohet.methods.vae3d.method import Vae3DMethod, model_from_checkpoint

__all__ = ["Vae3DMethod", "model_from_checkpoint"]
