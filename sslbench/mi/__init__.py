"""The information-theoretic toolkit: variational bounds on mutual information, critics, the
KDE entropy estimator and the ER bound, and Gaussians with a known mutual information.

- ``bounds``: InfoNCE, NWJ and DV lower bounds in nats, differentiable (usable as objectives);
- ``critics``: bilinear, separable and MLP (concat) critics that score every pair of a batch;
- ``entropy``: KDE entropy (Gaussian or von Mises–Fisher kernel), the ER bound's terms;
- ``gaussians``: correlated Gaussians, I = −½ Σ log(1 − ρ²), and their optimal critic.
"""
