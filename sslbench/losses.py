"""The pure loss functions of every method: tensors in, scalar out, state passed explicitly.

Each docstring cites the paper and equation it implements.
"""

from sslbench.methods.byol import byol_loss
from sslbench.methods.simclr import nt_xent

__all__ = ["byol_loss", "nt_xent"]
