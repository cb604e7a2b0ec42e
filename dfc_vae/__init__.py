"""dfc_vae: Deep Feature Consistent Variational Autoencoder (Hou, Shen, Sun, Qiu; WACV 2017)."""

__version__ = "0.1.0"

from .errors import UserError  # noqa: E402
from .model import DFCVAE, ModelConfig  # noqa: E402
from .losses import DFCLoss, kl_divergence, active_units  # noqa: E402
from .config import TrainConfig  # noqa: E402

__all__ = ["DFCVAE", "ModelConfig", "DFCLoss", "TrainConfig", "UserError", "kl_divergence", "active_units", "__version__"]
