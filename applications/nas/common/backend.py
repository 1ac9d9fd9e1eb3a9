"""The numeric backend of a run: TF32, cuDNN autotuning and determinism, set in one place.

The search, the retraining and the GPU scripts in ``benchmarks/`` call :func:`configure` with the same
arguments and write :func:`settings` into their results, so a figure always says which backend made it.

* TF32 is off by default. On recent GPUs cuDNN runs float32 convolutions in TF32 (10-bit mantissa)
  unless told otherwise. ∂_αF is a small difference of large per-operation terms, and the
  finite-difference step of DARTS's second order is below TF32's rounding step at the paper size:
  emulated on the CPU (``../shared/reviews/gpu-readiness.md``, W1), TF32 moved the logits by 0.2% but
  ∂_αF by 15%, the exact mixed product by 11% and the finite-difference one by 48%. The search is bound
  by the host, not by the GPU's arithmetic, so full float32 costs little.
* ``deterministic`` asks cuDNN and every other kernel for their deterministic algorithms, so a GPU
  search repeats bit for bit and a resumed one ends as the uninterrupted one. It must be set before
  CUDA initialises, because cuBLAS reads its workspace setting once; a kernel with no deterministic
  implementation warns (naming the operation) rather than stopping a long search.
* cuDNN autotuning (``benchmark``) is on for CUDA unless ``deterministic`` (the shapes are static, so the
  fastest algorithm is found once); it picks algorithms by timing, which is not reproducible.
"""

from __future__ import annotations

import os
from typing import Any

import torch

CUBLAS_WORKSPACE = ":4096:8"
"""``CUBLAS_WORKSPACE_CONFIG`` for deterministic cuBLAS (one of the two values NVIDIA documents)."""


def configure(device: torch.device | str, tf32: bool = False, deterministic: bool = False,
              benchmark: bool | None = None) -> dict[str, Any]:
    """Sets torch's numeric backend for a run on ``device`` and returns :func:`settings`.

    Args:
        device: where the run computes (``cuda`` turns autotuning on by default).
        tf32: allow TF32 in matrix products and convolutions (float32 otherwise).
        deterministic: deterministic algorithms everywhere (and no autotuning).
        benchmark: cuDNN autotuning; ``None`` = on for CUDA unless ``deterministic``.

    Raises:
        RuntimeError: ``deterministic`` asked for after CUDA has initialised without the cuBLAS setting.
    """
    if deterministic and os.environ.get("CUBLAS_WORKSPACE_CONFIG") is None:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            raise RuntimeError("deterministic cuBLAS needs CUBLAS_WORKSPACE_CONFIG set before CUDA initialises; "
                               f"configure the backend first, or export CUBLAS_WORKSPACE_CONFIG={CUBLAS_WORKSPACE}")
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    torch.backends.cudnn.deterministic = deterministic
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    if benchmark is None:
        benchmark = torch.device(device).type == "cuda" and not deterministic
    torch.backends.cudnn.benchmark = benchmark
    return settings(device)


def settings(device: torch.device | str) -> dict[str, Any]:
    """Every backend setting that changes what a run computes, with the versions and the device's name."""
    place = torch.device(device)
    cuda = place.type == "cuda" and torch.cuda.is_available()
    return {
        "device": str(place),
        "device_name": torch.cuda.get_device_name(place) if cuda else place.type,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    }
