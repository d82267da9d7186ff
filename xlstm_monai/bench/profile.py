"""
Where XLSTMUNet spends its time on a CPU, by part: patch embedding, mLSTM blocks (and within them the q/k
convolution), the convolutional path from the image, the skips from the tokens, and the decoder (bottleneck, up-blocks
and output). Module hooks time each part's forward and, in a training step, its backward; what no part covers
(norms between parts, layout changes, the loss, the optimizer, and the patch embedding's weight gradient, whose
backward the hooks cannot see: its input needs no gradient) is "other". The shares are the yardstick every speed
change is judged against; ``format_profile`` prints them beside the totals and MONAI's UNet in the same run.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections import defaultdict
from collections.abc import Callable

import torch
from torch import nn

from xlstm_monai.bench.study import command, write_report

__all__ = ["PARTS", "PartTimer", "format_profile", "profile_network"]

# each part: the network's modules it covers (by name prefix); "q/k convolution" lies inside the mLSTM blocks
PARTS: dict[str, Callable[[str], bool]] = {
    "patch embedding": lambda name: name == "encoder.patch_embed",
    "mLSTM blocks": lambda name: name.startswith("encoder.blocks.") and name.count(".") == 2,
    "q/k convolution": lambda name: name.startswith("encoder.blocks.") and name.endswith(".qk_conv"),
    "convolutional path": lambda name: name.startswith("decoder.conv_path.") and name.count(".") == 2,
    "token skips": lambda name: name.startswith("decoder.token_skips.") and name.count(".") == 2,
    "decoder": lambda name: (
        name in ("decoder.bottleneck", "decoder.out") or (name.startswith("decoder.decoders.") and name.count(".") == 2)
    ),
}
INSIDE = {"q/k convolution": "mLSTM blocks"}  # parts timed within another part, not beside it


class PartTimer:
    """Seconds spent in each part's forward and backward, from module hooks (CPU: every op runs synchronously)."""

    def __init__(self, network: nn.Module, backward: bool = True) -> None:
        self.backward_hooks = backward
        self.forward: dict[str, float] = defaultdict(float)
        self.backward: dict[str, float] = defaultdict(float)
        self._handles = []
        for name, module in network.named_modules():
            for part, covers in PARTS.items():
                if covers(name):
                    self._hook(module, part)

    def _hook(self, module: nn.Module, part: str) -> None:
        started: dict[str, float] = {}

        def forward_pre(*_):
            started["forward"] = time.perf_counter()

        def forward_post(*_):
            self.forward[part] += time.perf_counter() - started.pop("forward")

        def backward_pre(*_):
            started["backward"] = time.perf_counter()

        def backward_post(*_):
            if "backward" in started:
                self.backward[part] += time.perf_counter() - started.pop("backward")

        self._handles += [module.register_forward_pre_hook(forward_pre), module.register_forward_hook(forward_post)]
        if self.backward_hooks:  # they wrap every input and output of the module: not for inference
            self._handles += [
                module.register_full_backward_pre_hook(backward_pre),
                module.register_full_backward_hook(backward_post),
            ]

    def reset(self) -> None:
        self.forward.clear()
        self.backward.clear()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def _timed(step: Callable[[], None], repeats: int, timer: PartTimer | None) -> tuple[float, dict, dict]:
    """Median seconds of ``step`` and, per part, the median of its forward and backward seconds."""
    if repeats < 1:
        return 0.0, {}, {}
    totals, forwards, backwards = [], defaultdict(list), defaultdict(list)
    for _ in range(repeats):
        if timer is not None:
            timer.reset()
        began = time.perf_counter()
        step()
        totals.append(time.perf_counter() - began)
        if timer is not None:
            for part in PARTS:
                forwards[part].append(timer.forward.get(part, 0.0))
                backwards[part].append(timer.backward.get(part, 0.0))
    median = statistics.median
    return median(totals), {p: median(v) for p, v in forwards.items()}, {p: median(v) for p, v in backwards.items()}


def profile_network(
    network: nn.Module,
    infer_size: int = 96,
    train_size: int = 64,
    out_channels: int = 8,
    warmup: int = 1,
    repeats: int = 3,
    hooks: bool = True,
) -> dict:
    """An inference forward at ``infer_size``^3 and a training step (DiceCE, AdamW) at ``train_size``^3, batch 1:
    median seconds, and with ``hooks`` each part's forward and backward seconds."""
    from monai.losses import DiceCELoss

    timer = PartTimer(network, backward=False) if hooks else None
    image = torch.randn(1, 1, infer_size, infer_size, infer_size)
    network.eval()

    def infer():
        with torch.inference_mode():
            network(image)

    _timed(infer, warmup, None)
    infer_s, infer_parts, _ = _timed(infer, repeats, timer)

    network.train()
    loss = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4)
    crop = torch.randn(1, 1, train_size, train_size, train_size)
    label = torch.randint(0, out_channels, (1, 1, train_size, train_size, train_size))

    def train():
        optimizer.zero_grad(set_to_none=True)
        with warnings.catch_warnings():  # the patch embedding's input needs no gradient: its hook fires at its output
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            loss(network(crop), label).backward()
        optimizer.step()

    if timer is not None:
        timer.remove()
        timer = PartTimer(network)
    _timed(train, warmup, None)
    train_s, train_forward, train_backward = _timed(train, repeats, timer)
    if timer is not None:
        timer.remove()
    return {
        "infer_seconds": infer_s,
        "train_seconds": train_s,
        "infer_parts": infer_parts,
        "train_parts": {p: train_forward.get(p, 0.0) + train_backward.get(p, 0.0) for p in PARTS} if hooks else {},
        "train_forward_parts": train_forward,
        "train_backward_parts": train_backward,
    }


def _shares(parts: dict[str, float], total: float) -> dict[str, float]:
    shares = {p: parts.get(p, 0.0) / total for p in PARTS}
    covered = sum(v for p, v in shares.items() if p not in INSIDE)
    return {**shares, "other": max(1.0 - covered, 0.0)}


def format_profile(record: dict) -> str:
    """The table: each part's share of XLSTMUNet's inference forward and training step, then the totals beside
    MONAI's UNet measured in the same run, as ratios."""
    name = record.get("network", "XLSTMUNet")
    xlstm, unet = record["networks"][name], record["networks"].get("UNet")
    infer = _shares(xlstm["infer_parts"], xlstm["infer_seconds"])
    train = _shares(xlstm["train_parts"], xlstm["train_seconds"])
    lines = [f"{name + ' part':30} {'inference %':>11} {'training step %':>15}"]
    for part in [*PARTS, "other"]:
        name = f"  {part} (in blocks)" if part in INSIDE else part
        lines.append(f"{name:30} {100 * infer[part]:11.1f} {100 * train[part]:15.1f}")
    s = record["settings"]
    lines.append(
        f"{'total s':30} {xlstm['infer_seconds']:11.2f} {xlstm['train_seconds']:15.2f}"
        f"   ({s['infer_size']}^3 forward, {s['train_size']}^3 step, {s['threads']} threads)"
    )
    bare = xlstm.get("unhooked", xlstm)
    if "unhooked" in xlstm:
        lines.append(f"{'total s, no hooks':30} {bare['infer_seconds']:11.2f} {bare['train_seconds']:15.2f}")
    if unet:
        lines.append(f"{'UNet s':30} {unet['infer_seconds']:11.2f} {unet['train_seconds']:15.2f}")
        lines.append(
            f"{'/ UNet (no hooks)':30} {bare['infer_seconds'] / unet['infer_seconds']:11.2f} "
            f"{bare['train_seconds'] / unet['train_seconds']:15.2f}"
        )
    return "\n".join(lines)


def benchmark_profile(
    infer_size: int = 96,
    train_size: int = 64,
    threads: int = 2,
    repeats: int = 3,
    output: str = "runs/bench_profile.json",
    network: str = "XLSTMUNet",
) -> dict:
    """
    Profile an XLSTMUNet of ``bench networks`` by part (default: the class defaults, the large size), and time MONAI's
    UNet beside it.
    """
    from xlstm_monai.bench.networks import NETWORKS

    if not network.startswith("XLSTMUNet") or network not in NETWORKS:
        known = [n for n in NETWORKS if n.startswith("XLSTMUNet")]
        raise ValueError(f"network {network!r}: profile one of {known}")

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    record = {
        "command": command(
            "profile",
            infer_size=infer_size,
            train_size=train_size,
            threads=threads,
            repeats=repeats,
            output=output,
            network=network if network != "XLSTMUNet" else None,
        ),
        "network": network,
        "settings": {"infer_size": infer_size, "train_size": train_size, "threads": threads, "repeats": repeats},
        "networks": {},
    }
    for name in (network, "UNet"):
        built = NETWORKS[name](infer_size)
        record["networks"][name] = profile_network(
            built, infer_size, train_size, repeats=repeats, hooks=name == network
        )
        # the hooks' own cost, for the record: the same network without them
        if name == network:
            bare = profile_network(built, infer_size, train_size, repeats=repeats, hooks=False)
            record["networks"][name]["unhooked"] = {k: bare[k] for k in ("infer_seconds", "train_seconds")}
    return write_report(record, output, format_profile(record))
