"""Model families. Importing this package registers every model class with the CLI."""

from lightning_gen.models.base import Estimate, GenerativeModule, LikelihoodModule, NoLikelihoodError, from_levels, to_levels
from lightning_gen.models.ddpm import DDPM
from lightning_gen.models.flow import RealNVP
from lightning_gen.models.fvsbn import FVSBN
from lightning_gen.models.gan import GAN
from lightning_gen.models.made import MADE
from lightning_gen.models.nade import NADE
from lightning_gen.models.pixelcnn import GatedPixelCNN, PixelCNN
from lightning_gen.models.pixelrnn import DiagonalBiLSTM, RowLSTM
from lightning_gen.models.rbm import RBM
from lightning_gen.models.vae import VAE, Autoencoder

__all__ = [
    "DDPM", "GAN", "MADE", "NADE", "RBM", "VAE", "Autoencoder", "DiagonalBiLSTM", "FVSBN", "GatedPixelCNN",
    "GenerativeModule", "Estimate", "LikelihoodModule", "NoLikelihoodError", "PixelCNN", "RealNVP", "RowLSTM",
    "from_levels", "to_levels",
]
