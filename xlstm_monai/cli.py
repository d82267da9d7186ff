"""
The ``xlstm-monai`` command: the project's own tools beside ``python -m monai.bundle``.

    xlstm-monai demo                          # phantoms -> train heart_seg_ct -> evaluate -> infer
    xlstm-monai bench networks                # speed / memory against MONAI's networks
    xlstm-monai datalist --source DIR --output FILE [--num_folds 5 --label_fraction 0.1 ...]
    xlstm-monai phantoms heart --out_dir DIR [--modality mr]
    xlstm-monai check-data --config_file bundles/heart_seg_ct/configs/train.yaml [--datalist FILE]
    xlstm-monai package --release_dir release [--base_url URL]   # model-zoo zips + model_info.json
    xlstm-monai verify-bundles [--names heart_seg_ct]             # the model zoo's checks, as CI runs them
    xlstm-monai render-configs [--check]                          # bundle configs from recipes/ (development)

Imports are deferred to each command so that ``--help`` answers at once.
"""

from __future__ import annotations

import json

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

        benchmark_networks(
            device, _ints(train_sizes), _ints(infer_sizes), batch_size, _strs(networks), warmup, repeats, output
        )

    def inference(
        self,
        bundles=None,
        backends=None,
        threads: int = 2,
        volumes: int = 3,
        work_dir: str | None = None,
        output: str = "runs/bench_inference.json",
        overlays=None,
    ) -> None:
        """Time and peak memory per volume of each segmentation bundle's inference, PyTorch vs ONNX Runtime;
        --overlays large.yaml also times the network of that overlay config, with PyTorch, in the same run."""
        from xlstm_monai.bench.inference import TYPICAL_INPUTS, benchmark_inference

        benchmark_inference(
            tuple(_strs(bundles) or TYPICAL_INPUTS),
            tuple(_strs(backends) or ("pytorch", "onnxruntime")),
            threads,
            volumes,
            work_dir,
            output,
            tuple(_strs(overlays) or ()),
        )

    def data_check(
        self,
        volumes: int = 500,
        size: int = 128,
        workers: int | None = None,
        work_dir: str = "runs/bench_data_check",
        output: str = "runs/bench_data_check.json",
    ) -> None:
        """The data check on generated pairs: serial vs the process pool (cold cache) vs a re-check (warm cache)."""
        from xlstm_monai.bench.data_check import benchmark_data_check

        benchmark_data_check(volumes, size, workers, work_dir, output)

    def corpus(
        self,
        sizes=None,
        steps: int = 60,
        loader_steps: int = 200,
        threads: int = 2,
        data_dir: str | None = None,
        work_dir: str = "runs/bench_corpus",
        output: str = "docs/results/pretraining_corpus.json",
    ) -> None:
        """pretrain_ssl's large-corpus data path on 2,000 and 10,000 synthetic brain crops: memory, time to first
        step and step time against pre-loaded images."""
        from xlstm_monai.bench.corpus import benchmark_corpus

        benchmark_corpus(tuple(_ints(sizes) or (2000, 10000)), steps, loader_steps, threads, data_dir, work_dir, output)

    def profile(
        self,
        infer_size: int = 96,
        train_size: int = 64,
        threads: int = 2,
        repeats: int = 3,
        output: str = "runs/bench_profile.json",
        network: str = "XLSTMUNet",
    ) -> None:
        """The default XLSTMUNet's time by part (patch embedding, mLSTM blocks, q/k convolution, convolutional path,
        token skips, decoder), forward and training step, beside MONAI's UNet; --network: another XLSTMUNet of
        `bench networks` (e.g. XLSTMUNet-foundation-single)."""
        from xlstm_monai.bench.profile import benchmark_profile

        benchmark_profile(infer_size, train_size, threads, repeats, output, network)

    def gpu_check(self, out_dir: str | None = None, dry_run: bool = False) -> None:
        """GPU tests, networks at 64^3-160^3 and 20 steps of every bundle, JSON under $OUT (ci/gpu_check)."""
        from xlstm_monai.gpu_check import gpu_check

        raise SystemExit(1 if gpu_check(out_dir, dry_run) else 0)

    def sunnybrook(
        self,
        data_dir: str | None = None,
        epochs: int = 100,
        small: bool = True,
        output: str = "runs/bench_sunnybrook.json",
    ) -> None:
        """Leave-one-out LV blood pool / myocardium Dice of heart_seg_mri on the four Sunnybrook MRI cases."""
        from xlstm_monai.bench.sunnybrook import benchmark_sunnybrook

        benchmark_sunnybrook(data_dir=data_dir, epochs=epochs, small=small, output=output)

    def label_efficiency(
        self,
        task: str = "heart_phantoms",
        output: str | None = None,
        scale: str = "cpu",
        extra_unlabeled: list[str] | None = None,
        **options,
    ) -> None:
        """Pretrained vs random initialisation at few labels: `--task hippocampus` (real MSD Task04) or heart_phantoms.

        hippocampus options: data_dir, fractions, folds, seeds, iterations, pretrain_epochs (several, e.g. 8,16,32:
        the pretraining budget axis), learning_rates, tune_fold, tune_fraction, recipe (JSON: each arm's learning rate
        chosen beforehand; skips the grid), network (JSON: XLSTMUNet settings over the scale's, e.g.
        '{"token_mixer": "none"}' for the ablation), pretraining (JSON: pretrain_ssl settings over the scale's, a lever
        against the same random runs, e.g. '{"sparse_restoration": true, "mask_ratio": 0.75}'), encoder_only (a third
        arm: the pretrained encoder with a random decoder), work_dir.
        heart_phantoms options: num_cases, pretrain_epochs, finetune_iterations.
        """
        if task == "hippocampus":
            from xlstm_monai.bench.label_efficiency_hippocampus import benchmark_label_efficiency_hippocampus

            for name in ("fractions", "learning_rates", "pretrained_lr_scales"):
                if name in options:
                    options[name] = tuple(_floats(options[name]))
            for name in ("folds", "seeds", "pretrain_epochs"):
                if name in options:
                    options[name] = tuple(_ints(options[name]))
            for name in ("recipe", "network", "pretraining"):
                if isinstance(options.get(name), str):
                    options[name] = json.loads(options[name])
            benchmark_label_efficiency_hippocampus(
                output=output or "runs/label_efficiency_hippocampus.json",
                scale=scale,
                extra_unlabeled=_strs(extra_unlabeled),
                **options,
            )
        elif task == "heart_phantoms":
            from xlstm_monai.bench.label_efficiency_phantoms import benchmark_label_efficiency

            benchmark_label_efficiency(
                output=output or "runs/bench_label_efficiency.json",
                scale=scale,
                extra_unlabeled=_strs(extra_unlabeled),
                **options,
            )
        else:
            raise SystemExit(f"unknown task {task!r}: choose hippocampus or heart_phantoms")

    def probe(
        self,
        data_dir: str | None = None,
        folds=None,
        seeds=None,
        scale: str = "cpu",
        network=None,
        pretraining=None,
        pretrain_epochs: int | None = None,
        extra_unlabeled=None,
        released: bool = False,
        finetune: bool = False,
        iterations: int = 300,
        learning_rate: float = 1e-3,
        pretrained_lr_scale: float = 0.1,
        work_dir: str = "runs/label_efficiency_hippocampus",
        output: str = "runs/probe_hippocampus.json",
    ) -> None:
        """A linear probe on the frozen encoders of `bench label-efficiency --task hippocampus` (same options, same
        work_dir: its cached pretrainings) against random ones: is a case's hippocampus larger than the median?
        --released also probes the shipped foundation checkpoint; --finetune also fine-tunes brain_cls on the question
        from each pretraining and from random initialisation (--iterations, --learning_rate, --pretrained_lr_scale)."""
        from xlstm_monai.bench.probe_hippocampus import benchmark_probe_hippocampus

        benchmark_probe_hippocampus(
            data_dir=data_dir,
            folds=tuple(_ints(folds)) if folds is not None else (0, 1, 2),
            seeds=tuple(_ints(seeds)) if seeds is not None else (0, 1, 2),
            scale=scale,
            network=json.loads(network) if isinstance(network, str) else network,
            pretraining=json.loads(pretraining) if isinstance(pretraining, str) else pretraining,
            pretrain_epochs=pretrain_epochs,
            extra_unlabeled=_strs(extra_unlabeled),
            released=released,
            finetune=finetune,
            iterations=int(iterations),
            learning_rate=float(learning_rate),
            pretrained_lr_scale=float(pretrained_lr_scale),
            work_dir=work_dir,
            output=output,
        )

    def hippocampus(
        self,
        data_dir: str | None = None,
        folds=None,
        networks=None,
        scale: str = "cpu",
        iterations: int | None = None,
        learning_rates=None,
        work_dir: str = "runs/hippocampus_field",
        output: str = "runs/hippocampus_field.json",
        reference: str = "XLSTMUNet",
        reuse=None,
    ) -> None:
        """XLSTMUNet, its ablation without mLSTM blocks, UNet and SegResNet, k-fold on MSD Task04, all else equal.
        --reuse RECORD[,RECORD]: units that earlier records of this benchmark ran the same way are read back."""
        from xlstm_monai.bench.hippocampus import benchmark_hippocampus

        options = {
            "folds": tuple(_ints(folds)) if folds is not None else None,  # `--folds 0` is fold 0, not the default
            "networks": tuple(_strs(networks)) if networks else None,
            "learning_rates": tuple(_floats(learning_rates)) if learning_rates else None,
            "reuse": tuple(_strs(reuse)) if reuse else None,
        }
        benchmark_hippocampus(
            data_dir=data_dir,
            scale=scale,
            iterations=iterations,
            work_dir=work_dir,
            output=output,
            reference=reference,
            **{k: v for k, v in options.items() if v is not None},
        )


class Phantoms:
    """Generated phantoms, written as NIfTI in the real datasets' layouts."""

    def heart(
        self,
        out_dir: str,
        modality: str = "ct",
        num_cases: int = 12,
        shape: tuple = (96, 96, 96),
        spacing: tuple = (1.5, 1.5, 1.5),
        seed: int = 0,
    ) -> None:
        """Whole-heart CT ("ct") or MRI ("mr") phantoms in MM-WHS naming and label codes."""
        from xlstm_monai.phantoms import write_heart_phantoms

        entries = write_heart_phantoms(out_dir, num_cases, modality, shape, spacing, seed)
        print(f"wrote {len(entries)} {modality} cases to {out_dir}")

    def hippocampus(self, out_dir: str, num_cases: int = 20, seed: int = 0) -> None:
        """Hippocampus crops in the MSD Task04 layout (dataset.json, imagesTr/, labelsTr/)."""
        from xlstm_monai.phantoms import write_hippocampus_phantoms

        print(f"wrote {write_hippocampus_phantoms(out_dir, num_cases, seed=seed)}")

    def brain(self, out_dir: str, num_cases: int = 40, seed: int = 0, ad_fraction: float = 0.5) -> None:
        """T1 brains with a CN / AD signal and a participants.csv table."""
        from xlstm_monai.phantoms import write_brain_phantoms

        print(f"wrote {write_brain_phantoms(out_dir, num_cases, seed=seed, ad_fraction=ad_fraction)}")


class Commands:
    """Tools of xlstm-monai: demo, benchmarks, datalists, phantoms."""

    def __init__(self) -> None:
        self.bench = Bench()
        self.phantoms = Phantoms()

    def demo(self, output_dir: str = "runs/demo", epochs: int = 50, seed: int = 0) -> None:
        """Generate CT phantoms, train heart_seg_ct briefly, evaluate, infer; print per-structure Dice (~5 min CPU)."""
        from xlstm_monai.demo import run_demo

        run_demo(output_dir=output_dir, epochs=epochs, seed=seed)

    def check_data(self, config_file: str, datalist: str | None = None, **overrides) -> None:
        """Check a bundle's datalist (files, dimensions, shapes, affines, intensities, labels) and list every problem.

        Runs the config's own `data_check`, as its training and evaluation do first; `--datalist` (and any
        `--key value` override, e.g. `--dataset_dir`) replaces the config's. Exits with 1 when a problem is found.
        """
        from monai.bundle import ConfigParser

        from xlstm_monai.data import DataCheckError
        from xlstm_monai.data.bundle_datalist import DatalistError

        parser = ConfigParser()
        parser.read_config(config_file)
        if datalist is not None:
            overrides["datalist"] = datalist
        parser.update(overrides)
        try:
            report = parser.get_parsed_content("data_check", lazy=False)
        except Exception as error:  # the config wraps the check's error (or the datalist's) in its own
            cause, ours = error, (DataCheckError, DatalistError)  # these name the file and the problem
            while not isinstance(cause, ours) and (cause.__cause__ or cause.__context__):
                cause = cause.__cause__ or cause.__context__
            print(cause if isinstance(cause, ours) else f"data check could not run: {cause}")
            raise SystemExit(1) from None
        print(report.summary())

    def package(
        self,
        bundles_dir: str | None = None,
        release_dir: str = "release",
        base_url: str | None = None,
        names=None,
        weights_dir: str | None = None,
    ) -> None:
        """Write one model-zoo zip per bundle and model_info.json into release_dir, for `monai.bundle download`."""
        from xlstm_monai.release import package_bundles

        package_bundles(bundles_dir, release_dir, base_url, _strs(names), weights_dir)

    def release_models(
        self,
        steps=None,
        folds=None,
        model_from: str = "all",
        data_dir: str | None = None,
        extra_images=None,
        work_dir: str = "runs/release",
        output: str = "docs/results/brain_hippocampus_release.json",
        epochs: int | None = None,
    ) -> None:
        """Train the released weights from the real images (cached steps): the brain-MRI foundation checkpoint, the
        cross-validation of brain_hippocampus's shipped recipe, and its model on all cases; each installed into its
        bundle's models/ with its hash. Steps: pretrain, install-foundation, cross-validate, evaluate (score the kept
        fold models again with evaluate.yaml as it is now), train, install-model;
        --model_from foldN releases that cross-validation fold's model instead of the one trained on all cases;
        --epochs N --output FILE cross-validates the recipe at another schedule length (the schedule study);
        --steps train --epochs N trains it on all cases ahead of adopting it."""
        from xlstm_monai.release.models import HIPPOCAMPUS, STEPS, release_models

        folds = tuple(_ints(folds)) if folds is not None else HIPPOCAMPUS["folds"]
        release_models(
            tuple(_strs(steps) or STEPS), folds, model_from, data_dir, _strs(extra_images), work_dir, output, epochs
        )

    def verify_bundles(
        self, bundles_dir: str | None = None, names=None, schema: str | None = None, work_dir: str | None = None
    ) -> None:
        """Run the model zoo's checks on every bundle (metadata, configs, style, a short train + infer, export)."""
        from xlstm_monai.release import verify_bundles

        if not verify_bundles(bundles_dir, _strs(names), schema, work_dir):
            raise SystemExit(1)

    def render_configs(
        self, recipes_dir: str = "recipes", bundles_dir: str = "bundles", names=None, check: bool = False
    ) -> None:
        """Render the bundles' configs from recipes/ (templates + each bundle's choices); --check lists drift."""
        from xlstm_monai.dev.recipes import render_configs

        changed = render_configs(recipes_dir, bundles_dir, _strs(names), check)
        verb = "differ from their recipe sources" if check else "rewritten"
        print(f"{len(changed)} config(s) {verb}" + "".join(f"\n  {path}" for path in changed))
        if check and changed:
            raise SystemExit(1)

    def synthesize(
        self,
        out_dir: str,
        num_images: int,
        label_dir: str | None = None,
        around: str = "hippocampus",
        contrast: str = "t1",
        with_labels: bool = False,
        workers: int = 1,
        seed: int = 0,
    ) -> None:
        """Write brain MRI synthesised from the SynthSeg label maps (default: synthseg_label_maps/label_maps under
        $XLSTM_MONAI_DATA or ../shared/data): T1-like crops around a hippocampus, or anywhere in the head (--around
        random), e.g. an --extra_unlabeled folder for pretraining. Resumes an interrupted write."""
        from xlstm_monai.bench.datasets import shared_dataset
        from xlstm_monai.data.synthesis import write_synthetic_images

        source = label_dir or shared_dataset("synthseg_label_maps") / "label_maps"
        files = write_synthetic_images(
            source,
            out_dir,
            int(num_images),
            with_labels,
            workers=int(workers),
            around=around,
            contrast=contrast,
            seed=seed,
        )
        print(f"wrote {len(files)} images to {out_dir} (settings in {out_dir}/corpus.json)")

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


def _floats(value) -> list[float]:
    if isinstance(value, (int, float, str)):
        value = str(value).split(",")
    return [float(v) for v in value]


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
