"""The pure functions of every registered method: tensors in, a scalar (or tensor) out, state
passed explicitly; each docstring cites the paper and equation it implements.

Each method declares its functions in its ``SPEC.losses``, so a new method's loss appears here
without editing this module::

    >>> import torch
    >>> from sslbench.losses import nt_xent
    >>> z1, z2 = torch.randn(8, 16), torch.randn(8, 16)
    >>> loss = nt_xent(z1, z2, temperature=0.2)   # SimCLR eq. 1, a scalar
    >>> loss.ndim
    0

``available()`` lists the names; ``python -c "import sslbench.losses as L; help(L.swav)"`` shows
a function's equation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any


@functools.cache
def _functions() -> dict[str, Callable[..., Any]]:
    from sslbench.methods import get_method_spec, method_names

    table: dict[str, Callable[..., Any]] = {}
    for name in method_names():
        for fn in get_method_spec(name).losses:
            known = table.setdefault(fn.__name__, fn)
            if known is not fn:
                raise RuntimeError(f"two methods export different functions named "
                                   f"{fn.__name__!r}: rename one")
    return table


def available() -> list[str]:
    """The names of every exported function, sorted."""
    return sorted(_functions())


def __getattr__(name: str) -> Callable[..., Any]:
    if name.startswith("__"):  # module dunders (copy, pickle, inspect): not ours
        raise AttributeError(name)
    try:
        return _functions()[name]
    except KeyError:
        raise AttributeError(f"sslbench.losses has no {name!r}; see available()") from None


def __dir__() -> list[str]:
    return [*available(), "available"]
