"""A counter of host synchronisations for tests: the operations that make the host wait for a device.

Run the code under test with its tensors on the ``meta`` device (or a GPU): the counter sees every aten
operation, and counts as a synchronisation each one that reads a device tensor's value on the host
(``item``, ``nonzero``, ``equal``, a copy to the CPU, ...) and each blocking copy from the host to the
device (``non_blocking=False``, which waits for the copy to finish). A non-blocking copy does not count.
On the CPU nothing is a synchronisation: there is no device to wait for.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_READS = {"_local_scalar_dense", "item", "is_nonzero", "nonzero", "equal", "masked_select", "unique", "_unique2"}


def _devices(value: Any) -> list[torch.device]:
    if isinstance(value, torch.Tensor):
        return [value.device]
    if isinstance(value, (list, tuple)):
        return [d for v in value for d in _devices(v)]
    return []


class HostSyncCounter(TorchDispatchMode):
    """Counts host synchronisations (see the module's docstring); ``where`` lists the aten ops that made them."""

    def __init__(self) -> None:
        super().__init__()
        self.where: list[str] = []

    @property
    def count(self) -> int:
        return len(self.where)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        sources = _devices(args)
        on_device = any(d.type != "cpu" for d in sources)
        if name in _READS and on_device:
            self.where.append(name)
        elif name in ("_to_copy", "copy_"):
            target = kwargs.get("device") or (args[0].device if name == "copy_" else sources[0])
            source = sources[1] if name == "copy_" else sources[0]
            blocking = not (kwargs.get("non_blocking") or (name == "copy_" and len(args) > 2 and args[2]))
            if torch.device(target).type != torch.device(source).type and (torch.device(target).type == "cpu" or blocking):
                self.where.append(f"{name} {source}->{target}")
        return func(*args, **kwargs)
