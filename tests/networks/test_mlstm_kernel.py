from __future__ import annotations

import pytest
import torch

from xlstm_monai.networks.blocks import MLSTMKernel, MLSTMScanBlock, ScanDirection, resolve_kernel_name, scan_order


def _qkvif(seq_len: int, seed: int = 0, device: str = "cpu", heads: int = 2, dqk: int = 8, dv: int = 16):
    g = torch.Generator().manual_seed(seed)
    shape = (1, heads, seq_len)
    return {
        "q": torch.randn(*shape, dqk, generator=g).to(device),
        "k": torch.randn(*shape, dqk, generator=g).to(device),
        "v": torch.randn(*shape, dv, generator=g).to(device),
        "i": torch.randn(*shape, generator=g).to(device),
        "f": (3 + torch.randn(*shape, generator=g)).to(device),
    }


def test_default_kernels_are_linear_chunkwise():
    assert resolve_kernel_name("auto", "cpu") == "chunkwise--native_autograd"
    assert resolve_kernel_name("auto", "cuda") == "chunkwise--triton_limit_chunk"
    assert resolve_kernel_name({"cpu": "chunkwise--native_custbw"}, "cpu") == "chunkwise--native_custbw"
    assert resolve_kernel_name({"cpu": "chunkwise--native_custbw"}, "cuda") == "chunkwise--triton_limit_chunk"


def test_padding_leaves_real_tokens_unchanged():
    """A 100-token sequence is padded to 128 inside the layer; causality makes its outputs exact."""
    kernel = MLSTMKernel(chunk_size=64)
    full = _qkvif(128)
    short = {k: v[:, :, :100] for k, v in full.items()}
    h_short, state = kernel(**short)
    h_full, _ = kernel(**full)
    assert state is None
    assert h_short.shape == (1, 2, 100, 16)
    torch.testing.assert_close(h_short, h_full[:, :, :100], rtol=1e-5, atol=1e-5)


def test_bad_kernel_arguments():
    with pytest.raises(ValueError, match="Unknown mLSTM kernel"):
        MLSTMKernel("chunkwise--nonexistent")
    with pytest.raises(ValueError, match="power of two"):
        MLSTMKernel(chunk_size=48)
    with pytest.raises(ValueError, match="kernel_dtype"):
        MLSTMKernel(kernel_dtype="int8")
    with pytest.warns(UserWarning, match="quadratic"):
        MLSTMKernel("parallel--native_autograd")


def test_scan_orders_cover_every_axis_both_ways():
    orders = [scan_order(i, 3) for i in range(6)]
    assert {axis for axis, _ in orders} == {0, 1, 2}
    for axis in range(3):
        assert {d for a, d in orders if a == axis} == {ScanDirection.FORWARD, ScanDirection.REVERSE}


@pytest.mark.parametrize("fast_axis", [0, 1, 2])
@pytest.mark.parametrize("direction", list(ScanDirection))
def test_scan_permutation_round_trip(fast_axis, direction):
    block = MLSTMScanBlock(24, 2, fast_axis=fast_axis, direction=direction)
    grid = torch.randn(2, 3, 4, 5, 24)
    seq, perm = block._to_sequence(grid)
    assert seq.shape == (2, 60, 24)
    torch.testing.assert_close(block._to_grid(seq, grid, perm), grid, rtol=0, atol=0)
    # the first token of the scan is the grid's first corner (forward) or last corner (reverse)
    corner = grid[0, 0, 0, 0] if direction == ScanDirection.FORWARD else grid[0, -1, -1, -1]
    torch.testing.assert_close(seq[0, 0], corner)


def test_block_is_causal_along_its_scan():
    """Perturbing one token changes only the tokens after it in the scan order, and the class token."""
    torch.manual_seed(0)
    block = MLSTMScanBlock(24, 2, fast_axis=2, direction=ScanDirection.FORWARD).eval()
    grid = torch.randn(1, 3, 3, 3, 24)
    cls = torch.randn(1, 1, 24)
    perturbed = grid.clone()
    perturbed[0, 1, 1, 1] += 1.0  # flat index 13 of the (H, W, D) grid, D fastest
    with torch.no_grad():
        out_a, cls_a = block(grid, cls)
        out_b, cls_b = block(perturbed, cls)
    changed = (out_a - out_b).abs().amax(-1).flatten() > 1e-6
    assert not changed[:13].any() and changed[13:].all()
    assert (cls_a - cls_b).abs().max() > 1e-6


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA for the Triton kernels")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_matches_cpu_kernel(dtype):
    inputs = _qkvif(300, heads=4, dqk=32, dv=64)
    h_cpu, _ = MLSTMKernel("auto")(**inputs)
    cuda_inputs = {k: v.cuda() for k, v in inputs.items()}
    kernel = MLSTMKernel("auto", kernel_dtype="bfloat16" if dtype == torch.bfloat16 else "float32")
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        h_gpu, _ = kernel(**cuda_inputs)
    tol = 5e-2 if dtype == torch.bfloat16 else 1e-3
    torch.testing.assert_close(h_gpu.float().cpu(), h_cpu, rtol=tol, atol=tol)
