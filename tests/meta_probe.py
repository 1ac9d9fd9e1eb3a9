"""Device bugs caught without a GPU: run the code on the ``meta`` device and see where it first stops.

On ``meta`` every tensor op runs (shapes and dtypes only, no data), so a whole estimator or search step
runs its device-side work. Reading a value on the host (``.tolist()``, ``.item()``, ``bool()``) raises,
and so does mixing in a tensor created on the CPU ("expected all tensors to be on the same device"). The
first error is therefore either the first host synchronisation the code would make on a GPU, which a
test pins to its expected place, or a device bug, which fails the test.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOST_READ_MESSAGES = ("Cannot copy out of meta tensor", "cannot be called on meta tensors")
"""What torch raises when a ``meta`` tensor is read on the host (``.tolist()``/``.numpy()``; ``.item()``)."""


def first_host_read(fn: Callable[[], object]) -> str:
    """``path:function`` of the project code whose host read stopped ``fn`` on the meta device.

    Fails the calling test if ``fn`` stops with any other error (a device mismatch, for one), or not at all.
    """
    with pytest.raises(Exception) as raised:
        fn()
    err = raised.value
    if not any(text in str(err) for text in HOST_READ_MESSAGES):
        pytest.fail(f"stopped by {type(err).__name__} before any host read (a device bug?): {err}")
    # The project's own packages only: a virtual environment inside the checkout (CI's .venv) is not project code.
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if any(Path(f.filename).is_relative_to(ROOT / package) for package in ("hypergrad", "applications"))]
    assert frames, f"the host read happened outside the project: {err}"
    return f"{Path(frames[-1].filename).relative_to(ROOT)}:{frames[-1].name}"
