"""The pure loss functions of every method: tensors in, scalar out, state passed explicitly.

Each docstring cites the paper and equation it implements.
"""

from sslbench.methods.align_uniform import align_uniform_loss, alignment, uniformity
from sslbench.methods.barlow import barlow_twins
from sslbench.methods.byol import byol_loss
from sslbench.methods.common import info_nce, negative_cosine
from sslbench.methods.directpred import directpred_predictor
from sslbench.methods.er import er_loss
from sslbench.methods.moco import moco_loss
from sslbench.methods.mocov3 import mocov3_loss
from sslbench.methods.simclr import nt_xent
from sslbench.methods.simsiam import simsiam_loss
from sslbench.methods.swav import sinkhorn, swav
from sslbench.methods.vicreg import covariance_loss, invariance_loss, variance_loss, vicreg
from sslbench.mi.bounds import dv as dv_bound
from sslbench.mi.bounds import infonce as infonce_bound
from sslbench.mi.bounds import nwj as nwj_bound

__all__ = ["align_uniform_loss", "alignment", "barlow_twins", "byol_loss", "covariance_loss",
           "directpred_predictor", "dv_bound", "er_loss", "info_nce", "infonce_bound",
           "invariance_loss", "moco_loss", "mocov3_loss", "negative_cosine", "nt_xent",
           "nwj_bound", "simsiam_loss", "sinkhorn", "swav", "uniformity", "variance_loss",
           "vicreg"]
