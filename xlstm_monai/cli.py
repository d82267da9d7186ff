"""
The ``xlstm-monai`` command: the project's own tools beside ``python -m monai.bundle``.

    xlstm-monai demo                          # generate phantoms, train briefly, report
    xlstm-monai bench networks                # speed / memory against MONAI's networks
    xlstm-monai datalist --source DIR --output FILE [--num_folds 5 --label_fraction 0.1 ...]

Imports are deferred to each command so that ``--help`` answers at once.
"""

from __future__ import annotations

import fire

__all__ = ["main"]


class Bench:
    """Benchmarks that write JSON and print a table."""

    def networks(
        self,
        device: str = "auto",
        train_sizes: list[int] | None = None,
        infer_sizes: list[int] | None = None,
        batch_size: int | None = None,
        networks: list[str] | None = None,
        warmup: int | None = None,
        repeats: int | None = None,
        output: str = "runs/bench_networks.json",
    ) -> None:
        """Training-step and inference time and peak memory of XLSTMUNet beside MONAI's networks."""
        from xlstm_monai.bench.networks import benchmark_networks

        benchmark_networks(device, _ints(train_sizes), _ints(infer_sizes), batch_size, _strs(networks), warmup,
                           repeats, output)


class Commands:
    """Tools of xlstm-monai: demo, benchmarks, datalists."""

    def __init__(self) -> None:
        self.bench = Bench()

    def demo(self, output_dir: str = "runs/demo", steps: int = 30, seed: int = 0) -> None:
        """Build an XLSTMUNet, train it for a few steps on generated heart phantoms and report the loss."""
        from xlstm_monai.demo import run_demo

        run_demo(output_dir=output_dir, steps=steps, seed=seed)

    def datalist(self, source: str, output: str, **kwargs) -> None:
        """Write a MONAI datalist JSON (MM-WHS folder, MSD dataset.json, paired folders, images, CSV table)."""
        from xlstm_monai.data.datalist import build_datalist

        build_datalist(source, output, **kwargs)


def _ints(value) -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, (int, str)):
        value = str(value).split(",")
    return [int(v) for v in value]


def _strs(value) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = value.split(",")
    return [str(v) for v in value]


def main() -> None:
    fire.Fire(Commands(), name="xlstm-monai")


if __name__ == "__main__":
    main()
