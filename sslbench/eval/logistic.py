"""The linear evaluation of Tschannen et al. (ICLR 2020): multinomial logistic regression with the
SAGA solver (scikit-learn) on min-max scaled features, C = 10, tolerance 0.1, fitted on the whole
train split and scored on the whole test split — the ``logistic_fit`` of the authors' notebook
(google-research, ``mutual_information_representation_learning``).

It reproduces the paper's numbers, so it follows their protocol; it chooses nothing (no
hyperparameter is tuned on the test split).
"""

from __future__ import annotations

import numpy as np
import torch

C = 10.0  # inverse L2 strength (the notebook's)
TOLERANCE = 0.1  # SAGA's stopping tolerance (the notebook's)


def saga_logistic_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                           test_y: torch.Tensor, seed: int = 0) -> float:
    """Test accuracy (a fraction) of SAGA logistic regression fitted on min-max scaled ``train_x``
    (the scaler is the train split's, applied to both)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import MinMaxScaler

    scaler = MinMaxScaler()
    train = scaler.fit_transform(train_x.detach().cpu().double().numpy())
    test = scaler.transform(test_x.detach().cpu().double().numpy())
    model = LogisticRegression(solver="saga", tol=TOLERANCE, C=C, random_state=seed)
    model.fit(train, train_y.cpu().numpy())
    return float(np.mean(model.predict(test) == test_y.cpu().numpy()))
