"""The torch runtime the models run on (version, thread count), for reports such as ``bench``.

Here so that code outside the codec never imports torch itself: asking imports torch, importing
this module does not.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TorchRuntime", "torch_runtime"]


@dataclass(frozen=True)
class TorchRuntime:
    """What a timing depends on: the torch version and its intra-op thread count."""

    version: str
    threads: int


def torch_runtime() -> TorchRuntime:
    """The running torch's version and thread count (imports torch)."""
    import torch

    return TorchRuntime(version=str(torch.__version__), threads=torch.get_num_threads())
