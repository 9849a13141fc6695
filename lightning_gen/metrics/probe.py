"""Linear probe: how linearly separable the classes are in a model's representation.

A multinomial logistic regression (scikit-learn) is fitted on the features of the training images and scored on
the test images. The features come from any callable: a model's ``encode(x)`` (autoencoders, VAEs: the posterior
means), a discriminator's ``features(x)`` (GANs), or anything else mapping a batch to ``(N, ...)`` floats. Features
are standardised with the training split's mean and deviation before the fit.

    from lightning_gen.metrics.probe import linear_probe
    linear_probe(model.encode, (train_x, train_y, test_x, test_y))
    # {"probe_acc": ..., "probe_acc_se": ..., "n_train": ..., "n_test": ...}

``probe_acc_se`` is the binomial standard error of the test accuracy over the test images,
``sqrt(acc (1 - acc) / n_test)``: the uncertainty of the score from the finite test set, for a fixed fit.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

Data = tuple[Tensor, Tensor, Tensor, Tensor]


def _features(encode_fn: Callable[[Tensor], Tensor], x: Tensor, batch_size: int, device) -> np.ndarray:
    out = []
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            batch = x[start : start + batch_size]
            if device is not None:
                batch = batch.to(device)
            out.append(encode_fn(batch).detach().flatten(1).double().cpu())  # (B, ...) -> (B, D)
    return torch.cat(out).numpy()


def linear_probe(
    encode_fn: Callable[[Tensor], Tensor],
    data: Data,
    max_train: int | None = None,
    *,
    max_test: int | None = None,
    batch_size: int = 500,
    device: str | torch.device | None = None,
    C: float = 1.0,
    max_iter: int = 1000,
    seed: int = 0,
) -> dict:
    """Test accuracy of a logistic regression on ``encode_fn`` features.

    Args:
        encode_fn: batch ``(B, ...)`` -> features ``(B, ...)`` (flattened to ``(B, D)``), called under
            ``torch.no_grad()``.
        data: ``(train_x, train_y, test_x, test_y)``. Labels must be class indices >= 0.
        max_train, max_test: fit on / score on a random subset of this size (drawn with ``seed``); default all.
        batch_size: images per ``encode_fn`` call.
        device: where batches are moved before ``encode_fn`` (default: left where they are).
        C, max_iter: inverse L2 regularisation strength and iteration cap of the logistic regression.

    Returns:
        ``{"probe_acc": test accuracy, "probe_acc_se": its binomial standard error over the test images,
        "n_train": images fitted on, "n_test": images scored}``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(data) != 4:
        raise ValueError(f"data must be (train_x, train_y, test_x, test_y), got a sequence of {len(data)}")
    train_x, train_y, test_x, test_y = (torch.as_tensor(t) for t in data)
    if (train_y < 0).any() or (test_y < 0).any():
        raise ValueError("the data has no class labels (y = -1): a linear probe needs labelled data, e.g. MNIST "
                         "rather than statically binarized MNIST")
    rng = np.random.default_rng(seed)
    if max_train is not None and max_train < train_x.shape[0]:
        idx = torch.as_tensor(np.sort(rng.choice(train_x.shape[0], max_train, replace=False)))
        train_x, train_y = train_x[idx], train_y[idx]
    if max_test is not None and max_test < test_x.shape[0]:
        idx = torch.as_tensor(np.sort(rng.choice(test_x.shape[0], max_test, replace=False)))
        test_x, test_y = test_x[idx], test_y[idx]
    f_train = _features(encode_fn, train_x, batch_size, device)
    f_test = _features(encode_fn, test_x, batch_size, device)
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    clf.fit(f_train, train_y.numpy())
    acc = float((clf.predict(f_test) == test_y.numpy()).mean())
    n_test = int(f_test.shape[0])
    return {"probe_acc": acc, "probe_acc_se": float(np.sqrt(acc * (1 - acc) / n_test)),
            "n_train": int(f_train.shape[0]), "n_test": n_test}
