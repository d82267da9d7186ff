"""
Speed and memory of XLSTMUNet (the class defaults and the bundles' foundation size) side by side with MONAI's UNet,
SegResNet, UNETR and SwinUNETR.

Every network gets the same settings (1 input / 8 output channels, AdamW, DiceCE, bf16 autocast on CUDA) and is
measured in the same run: a training step (forward, loss, backward, optimizer step) and an inference forward pass
per input size. Each measurement runs in a fresh process, so the peak memory of one network (CUDA peak allocation,
or peak resident memory on CPU) is not inflated by another. Results are written as JSON and printed as a table with
ratios to UNet and SwinUNETR.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Sequence

import torch

from xlstm_monai.bench.study import command, write_report
from xlstm_monai.presets import SMALL

__all__ = ["DEFAULT_NETWORKS", "NETWORKS", "benchmark_networks", "format_table"]

REFERENCES = ("UNet", "SwinUNETR")  # the ratio columns: the speed targets are against UNet


def _xlstm_unet(size: int, **settings) -> torch.nn.Module:
    from xlstm_monai.networks import XLSTMUNet

    return XLSTMUNet(in_channels=1, out_channels=8, img_size=96, **settings)  # the class defaults: the large size


def _xlstm_unet_variant(**settings) -> Callable[[int], torch.nn.Module]:
    """The default XLSTMUNet with ``settings`` changed: the candidates of the CPU-speed work beside it."""

    def build(size: int) -> torch.nn.Module:
        return _xlstm_unet(size, **settings)

    return build


def _unet(size: int) -> torch.nn.Module:
    from monai.networks.nets import UNet

    return UNet(3, 1, 8, channels=(32, 64, 128, 256, 512), strides=(2, 2, 2, 2), num_res_units=2)


def _segresnet(size: int) -> torch.nn.Module:
    from monai.networks.nets import SegResNet

    return SegResNet(spatial_dims=3, in_channels=1, out_channels=8, init_filters=32)


def _unetr(size: int) -> torch.nn.Module:
    from monai.networks.nets import UNETR

    return UNETR(1, 8, img_size=size, feature_size=16, hidden_size=768)


def _swin_unetr(size: int) -> torch.nn.Module:
    from monai.networks.nets import SwinUNETR

    return SwinUNETR(in_channels=1, out_channels=8, feature_size=48)


NETWORKS: dict[str, Callable[[int], torch.nn.Module]] = {
    "XLSTMUNet": _xlstm_unet,
    # the class defaults (the large size) with one convolution each side of a summed skip at input resolution; the
    # foundation size, every segmentation bundle's network, and its candidates at input resolution
    "XLSTMUNet-single": _xlstm_unet_variant(full_resolution="single"),
    "XLSTMUNet-foundation": _xlstm_unet_variant(**SMALL, feature_size=16),
    "XLSTMUNet-foundation-single": _xlstm_unet_variant(**SMALL, feature_size=16, full_resolution="single"),
    "XLSTMUNet-foundation-narrow": _xlstm_unet_variant(**SMALL, feature_size=16, full_resolution="narrow"),
    # the same function with mlstm_kernels' chunkwise kernel with a hand-written backward (CPU kernel lever)
    "XLSTMUNet-foundation-custbw": _xlstm_unet_variant(
        **SMALL, feature_size=16, mlstm_kernel="chunkwise--native_custbw"
    ),
    "UNet": _unet,
    "SegResNet": _segresnet,
    "UNETR": _unetr,
    "SwinUNETR": _swin_unetr,
}
# what a run measures unless told: both sizes of XLSTMUNet and MONAI's networks; the candidates only when named
DEFAULT_NETWORKS = ("XLSTMUNet", "XLSTMUNet-foundation", "UNet", "SegResNet", "UNETR", "SwinUNETR")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _measure(name: str, size: int, mode: str, batch_size: int, device_name: str, warmup: int, repeats: int) -> dict:
    """One network, one size, one mode ("train" or "infer"), in the current process."""
    from monai.losses import DiceCELoss

    device = torch.device(device_name)
    torch.manual_seed(0)
    net = NETWORKS[name](size).to(device)
    params = sum(p.numel() for p in net.parameters())
    batch = batch_size if mode == "train" else 1
    x = torch.randn(batch, 1, size, size, size, device=device)
    y = torch.randint(0, 8, (batch, 1, size, size, size), device=device)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step() -> None:
        if mode == "train":
            net.train()
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                loss = loss_fn(net(x), y)
            loss.backward()
            optimizer.step()
        else:
            net.eval()
            with torch.no_grad(), autocast:
                net(x)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    try:
        for i in range(warmup + repeats):
            _sync(device)
            start = time.perf_counter()
            step()
            _sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    except torch.OutOfMemoryError:
        return {"network": name, "size": size, "mode": mode, "batch": batch, "params": params, "status": "OOM"}
    if device.type == "cuda":
        peak_gib = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB, whole process
    return {
        "network": name,
        "size": size,
        "mode": mode,
        "batch": batch,
        "params": params,
        "status": "ok",
        "ms": 1000 * statistics.median(times),
        "peak_gib": peak_gib,
    }


def _child(queue: mp.Queue, args: tuple, threads: int) -> None:
    torch.set_num_threads(threads)
    try:
        queue.put(_measure(*args))
    except Exception as exc:  # reported in the table rather than ending the whole benchmark
        name, size, mode = args[:3]
        queue.put({"network": name, "size": size, "mode": mode, "status": f"error: {type(exc).__name__}: {exc}"[:200]})


def _run_isolated(args: tuple, threads: int) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, args, threads))
    proc.start()
    proc.join()
    if queue.empty():
        name, size, mode = args[:3]
        return {"network": name, "size": size, "mode": mode, "status": f"crashed (exit code {proc.exitcode})"}
    return queue.get()


def benchmark_networks(
    device: str = "auto",
    train_sizes: Sequence[int] | None = None,
    infer_sizes: Sequence[int] | None = None,
    batch_size: int | None = None,
    networks: Sequence[str] | None = None,
    warmup: int | None = None,
    repeats: int | None = None,
    output: str = "runs/bench_networks.json",
) -> dict:
    """
    Measure and compare the networks; write ``output`` (JSON) and print the table.

    Defaults follow the device: on CUDA training at 64^3-160^3 with batch 2 and inference at the same sizes; on
    CPU a training step at 64^3 and forward passes at 64^3 and 96^3, batch 1 (SwinUNETR takes ~10 s a pass there).
    ``networks``: names of :data:`NETWORKS`; default :data:`DEFAULT_NETWORKS` (the speed candidates only when named).
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    on_gpu = device.startswith("cuda")
    train_sizes = list(train_sizes if train_sizes is not None else ((64, 96, 128, 160) if on_gpu else (64,)))
    infer_sizes = list(infer_sizes if infer_sizes is not None else ((64, 96, 128, 160) if on_gpu else (64, 96)))
    batch_size = batch_size or (2 if on_gpu else 1)
    warmup = warmup if warmup is not None else (3 if on_gpu else 1)
    repeats = repeats if repeats is not None else (10 if on_gpu else 2)
    networks = list(networks or DEFAULT_NETWORKS)
    unknown = sorted(set(networks) - set(NETWORKS))
    if unknown:
        raise ValueError(f"unknown networks {unknown}; choose from {list(NETWORKS)}")
    threads = os.cpu_count() or 1
    results = []
    for mode, sizes in (("train", train_sizes), ("infer", infer_sizes)):
        for size in sizes:
            for name in networks:
                row = _run_isolated((name, size, mode, batch_size, device, warmup, repeats), threads)
                results.append(row)
                print(f"  {mode:5s} {size:4d}^3 {name:10s} {_cell(row)}", flush=True)
    report = {
        "command": command(
            "networks",
            device=device,
            train_sizes=train_sizes,
            infer_sizes=infer_sizes,
            batch_size=batch_size,
            networks=networks,
            warmup=warmup,
            repeats=repeats,
        ),
        "device": torch.cuda.get_device_name(0) if on_gpu else platform.processor() or platform.machine(),
        "device_type": "cuda" if on_gpu else "cpu",
        "threads": threads,
        "torch": torch.__version__,
        "settings": {
            "batch_size": batch_size,
            "warmup": warmup,
            "repeats": repeats,
            "in_channels": 1,
            "out_channels": 8,
            "amp": "bf16" if on_gpu else "fp32",
            "optimizer": "AdamW",
            "loss": "DiceCE",
        },
        "results": results,
        "scaling": _per_voxel_scaling(results),
    }
    return write_report(report, output, format_table(report))


def _cell(row: dict) -> str:
    if row.get("status") != "ok":
        return str(row.get("status"))
    return f"{row['ms']:.1f} ms, {row['peak_gib']:.2f} GiB"


def _per_voxel_scaling(results: list[dict]) -> dict:
    """Training time per voxel at the largest size over that at the smallest, per network (1.0 = linear)."""
    scaling = {}
    for name in {r["network"] for r in results}:
        rows = sorted(
            (r for r in results if r["network"] == name and r["mode"] == "train" and r["status"] == "ok"),
            key=lambda r: r["size"],
        )
        if len(rows) >= 2:
            lo, hi = rows[0], rows[-1]
            scaling[name] = {
                "from": lo["size"],
                "to": hi["size"],
                "per_voxel_growth": (hi["ms"] / hi["size"] ** 3) / (lo["ms"] / lo["size"] ** 3),
            }
    return scaling


def format_table(report: dict) -> str:
    """Markdown table: time and peak memory per network and size, with ratios to each of :data:`REFERENCES`."""
    rows = report["results"]
    ratio_heads = " | ".join(f"time / {ref} | memory / {ref}" for ref in REFERENCES)
    lines = [
        f"device: {report['device']} ({report['device_type']}, {report['threads']} threads), "
        f"batch {report['settings']['batch_size']} for training, 1 for inference",
        f"| mode | size | network | params (M) | ms | peak GiB | {ratio_heads} |",
        "|---|---|---|---|---|---|" + "---|---|" * len(REFERENCES),
    ]
    for row in rows:
        if row.get("status") != "ok":
            lines.append(
                f"| {row['mode']} | {row['size']}^3 | {row['network']} | | {row.get('status')} | |"
                + " | |" * len(REFERENCES)
            )
            continue
        ratios = []
        for name in REFERENCES:
            ref = next(
                (r for r in rows if r["network"] == name and r["mode"] == row["mode"] and r["size"] == row["size"]),
                None,
            )
            if ref is None:
                ratios += ["n/a", "n/a"]
            elif ref.get("status") != "ok":
                ratios += ["reference failed"] * 2
            else:
                ratios += [f"{row['ms'] / ref['ms']:.2f}x", f"{row['peak_gib'] / ref['peak_gib']:.2f}x"]
        lines.append(
            f"| {row['mode']} | {row['size']}^3 | {row['network']} | {row['params'] / 1e6:.1f} | {row['ms']:.1f} "
            f"| {row['peak_gib']:.2f} | {' | '.join(ratios)} |"
        )
    for name, s in sorted(report.get("scaling", {}).items()):
        lines.append(f"{name}: training time per voxel {s['from']}^3 -> {s['to']}^3 grows {s['per_voxel_growth']:.2f}x")
    if report["device_type"] == "cpu":
        lines.append("peak GiB on CPU is the peak resident memory of the measuring process (torch runtime included)")
    return "\n".join(lines)
