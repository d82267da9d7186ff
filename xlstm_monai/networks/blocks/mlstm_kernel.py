# Copyright (c) xlstm-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping

import torch
from mlstm_kernels.torch import get_available_mlstm_kernels, get_mlstm_kernel
from mlstm_kernels.torch.kernel_wrappers import wrap_chunkwise__pad_zeros
from torch import nn

__all__ = ["MLSTMKernel", "DEFAULT_KERNELS", "resolve_kernel_name"]

# Linear-time chunkwise kernels: Triton on CUDA, pure torch elsewhere. The quadratic `parallel--*` kernels
# hold an S x S matrix per head (29 GiB at 24^3 tokens) and are never chosen automatically.
DEFAULT_KERNELS: dict[str, str] = {"cuda": "chunkwise--triton_limit_chunk", "cpu": "chunkwise--native_autograd"}

# `chunkwise--triton_xl_chunk` aborts the whole process (an LLVM assertion, not an exception) in bf16 on
# triton 3.6; it runs in float32, so its kernel dtype is pinned to float32.
_FLOAT32_ONLY_KERNELS = ("chunkwise--triton_xl_chunk",)
_KERNEL_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_kernel_name(kernel: str | Mapping[str, str], device_type: str) -> str:
    """Kernel name for a device type ("cuda", "cpu", ...) from "auto", one name, or a per-device mapping."""
    if isinstance(kernel, Mapping):
        name = kernel.get(device_type, "auto")
    else:
        name = kernel
    if name == "auto":
        name = DEFAULT_KERNELS.get(device_type, DEFAULT_KERNELS["cpu"])
    return name


class MLSTMKernel(nn.Module):
    """
    Sequence mixer for ``xlstm.xlstm_large`` mLSTM layers that picks the ``mlstm_kernels`` kernel by the
    device of its inputs and pads the sequence to the kernel's chunk multiple.

    It replaces ``mLSTMLayer.mlstm_backend`` (same call signature, returns ``(h, None)``), so one network
    trains on CUDA with Triton and runs on CPU with the pure-torch kernel without being rebuilt. Sequences are
    padded to the chunk multiple with ``mlstm_kernels``' own zero padding: the recurrence is causal, so every real
    token's output is unchanged, and the padded outputs are cropped off.

    Args:
        kernel: "auto" (Triton chunkwise on CUDA, pure-torch chunkwise on CPU), a kernel name from
            ``mlstm_kernels.torch.get_available_mlstm_kernels()`` used on every device, or a mapping
            ``{"cuda": name, "cpu": name}``. Defaults to "auto".
        chunk_size: chunk length of the chunkwise kernels (a power of two). Defaults to 64.
        kernel_dtype: compute dtype of the kernel under autocast: "bfloat16", "float16" or "float32".
            Defaults to "bfloat16". Kernels known to abort in half precision always run in float32.
        eps: numerical epsilon of the kernel. Defaults to 1e-6.
    """

    def __init__(
        self,
        kernel: str | Mapping[str, str] = "auto",
        chunk_size: int = 64,
        kernel_dtype: str = "bfloat16",
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if chunk_size < 1 or chunk_size & (chunk_size - 1):
            raise ValueError(f"chunk_size must be a power of two, got {chunk_size}.")
        if kernel_dtype not in _KERNEL_DTYPES:
            raise ValueError(f"kernel_dtype must be one of {sorted(_KERNEL_DTYPES)}, got {kernel_dtype!r}.")
        names = kernel.values() if isinstance(kernel, Mapping) else [kernel]
        known = set(get_available_mlstm_kernels()) | set(DEFAULT_KERNELS.values()) | {"auto"}
        for name in names:
            if name not in known and not name.startswith("chunkwise--triton"):
                raise ValueError(f"Unknown mLSTM kernel {name!r}; available: {sorted(known)}.")
            if name.startswith("parallel--"):
                warnings.warn(
                    f"mLSTM kernel {name!r} is quadratic in the token count (an S x S matrix per head); "
                    "use it only for comparisons at small sizes.",
                    stacklevel=2,
                )
        self.kernel = dict(kernel) if isinstance(kernel, Mapping) else kernel
        self.chunk_size = chunk_size
        self.kernel_dtype = kernel_dtype
        self.eps = eps
        self._kernel_fns: dict[str, Callable] = {}  # keyed by kernel name, the key it is looked up with

    def kernel_name(self, device_type: str) -> str:
        return resolve_kernel_name(self.kernel, device_type)

    def _kernel_fn(self, name: str) -> Callable:
        # Triton kernels register only where triton imports, so they are looked up on first use.
        if name not in self._kernel_fns:
            self._kernel_fns[name] = get_mlstm_kernel(name)
        return self._kernel_fns[name]

    def forward(
        self,
        q: torch.Tensor,  # (B, NH, S, DHQK)
        k: torch.Tensor,  # (B, NH, S, DHQK)
        v: torch.Tensor,  # (B, NH, S, DHV)
        i: torch.Tensor,  # (B, NH, S)
        f: torch.Tensor,  # (B, NH, S)
        c_initial: torch.Tensor | None = None,
        n_initial: torch.Tensor | None = None,
        m_initial: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, None]:
        name = self.kernel_name(q.device.type)
        dtype = torch.float32 if name in _FLOAT32_ONLY_KERNELS else _KERNEL_DTYPES[self.kernel_dtype]
        kwargs = dict(
            q=q,
            k=k,
            v=v,
            i=i,
            f=f,
            c_initial=c_initial,
            n_initial=n_initial,
            m_initial=m_initial,
            return_last_states=False,
            chunk_size=self.chunk_size,
            eps=self.eps,
            autocast_kernel_dtype=dtype,
        )
        if name.startswith("parallel--"):  # no chunks to fill
            return self._kernel_fn(name)(**kwargs), None
        # mlstm_kernels' own padding: zeros at the end (with gates that leave the state alone), cropped off after
        return wrap_chunkwise__pad_zeros(mlstm_chunkwise_kernel=self._kernel_fn(name), **kwargs), None

    def extra_repr(self) -> str:
        return f"kernel={self.kernel!r}, chunk_size={self.chunk_size}, kernel_dtype={self.kernel_dtype!r}"
