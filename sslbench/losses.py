"""The pure loss functions of every method: tensors in, scalar out, state passed explicitly.

Each docstring cites the paper and equation it implements.
"""

from sslbench.methods.align_uniform import align_uniform_loss, alignment, uniformity
from sslbench.methods.barlow import barlow_twins
from sslbench.methods.byol import byol_loss
from sslbench.methods.common import info_nce, negative_cosine
from sslbench.methods.directpred import directpred_predictor
from sslbench.methods.moco import moco_loss
from sslbench.methods.mocov3 import mocov3_loss
from sslbench.methods.simclr import nt_xent
from sslbench.methods.simsiam import simsiam_loss
from sslbench.methods.swav import sinkhorn, swav
from sslbench.methods.vicreg import covariance_loss, invariance_loss, variance_loss, vicreg

__all__ = ["align_uniform_loss", "alignment", "barlow_twins", "byol_loss", "covariance_loss",
           "directpred_predictor", "info_nce", "invariance_loss", "moco_loss", "mocov3_loss",
           "negative_cosine", "nt_xent", "simsiam_loss", "sinkhorn", "swav", "uniformity",
           "variance_loss", "vicreg"]
