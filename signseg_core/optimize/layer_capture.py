"""Reading one layer's activation from a shared model: a hook that is always removed.

:func:`capture_layer` hooks a layer for the duration of a ``with`` block (removed in ``finally``,
also when the block raises), and the :class:`LayerCapture` it yields runs the model only as far
as that layer. Gradient visualization (:mod:`signseg_core.optimize.gradvis`) puts the hook on a
structural copy sharing the weights, so the model other sessions use never carries one.
"""

from __future__ import annotations

from contextlib import contextmanager

from torch import Tensor, nn

__all__ = ["SITES", "LayerCapture", "capture_layer"]

#: Where a layer is read: what it returns, or its first input.
SITES = ("output", "input")


class _StopForward(Exception):
    """Raised by a capture hook to end a forward pass once the layer has been reached."""


class LayerCapture:
    """What :func:`capture_layer` yields: ``value`` holds the last activation seen.

    Calling it runs ``module`` on ``inputs`` only as far as the layer and returns the activation.
    """

    def __init__(self, module: nn.Module, site: str):
        self.module, self.site, self.value, self._stop = module, site, None, False

    def _store(self, activation) -> None:
        if isinstance(activation, tuple):  # a forward pre-hook receives the inputs as a tuple
            activation = activation[0]
        self.value = activation
        if self._stop:
            raise _StopForward

    def __call__(self, inputs: Tensor) -> Tensor:
        self.value, self._stop = None, True
        try:
            self.module(inputs)
        except _StopForward:
            pass
        finally:
            self._stop = False
        if self.value is None:
            raise RuntimeError("the forward pass never reached the captured layer")
        return self.value


@contextmanager
def capture_layer(module: nn.Module, layer: nn.Module, *, site: str = "output"):
    """Hook ``layer`` (a submodule of ``module``) for the duration of the block.

    ``site="output"`` stores what the layer returns, ``"input"`` its first input. The hook is
    removed on exit, also when the block raises. A layer called several times per forward pass
    is captured at its first call by :meth:`LayerCapture.__call__`, at its last otherwise.
    """
    if site not in SITES:
        raise ValueError(f"site {site!r}; choose from {SITES}")
    capture = LayerCapture(module, site)
    if site == "output":
        handle = layer.register_forward_hook(lambda _m, _i, out: capture._store(out))
    else:
        handle = layer.register_forward_pre_hook(lambda _m, inputs: capture._store(inputs))
    try:
        yield capture
    finally:
        handle.remove()
