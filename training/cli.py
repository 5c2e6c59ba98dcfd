"""``python -m training``: train and evaluate the models.

    python -m training train digit     --data-dir ../shared/data/mnist
    python -m training train sequence  --data-dir ../shared/data/mnist --init-from weights/digit.pt
    python -m training train digit-sum --data-dir ../shared/data/mnist --init-from weights/digit.pt
    python -m training train fashion   # Fashion-MNIST: $FASHION_MNIST_DATA_DIR or Debian's dataset-fashion-mnist
    python -m training train line-reader --data-dir ../shared/data/mnist --device cuda   # strips read whole
    python -m training ensemble digit <seed 0>.pt <seed 1>.pt <seed 2>.pt --data-dir ../shared/data/mnist
    python -m training evaluate weights/digit.pt --data-dir ../shared/data/mnist
    python -m training study error-gallery --data-dir ../shared/data/mnist   # writes docs/studies/
    python -m training study label-noise --setting end-to-end --data-dir ../shared/data/mnist --seeds 3
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import get_args

import torch

from model.checkpoint import load_checkpoint
from model.devices import select_device
from training import distributed
from training.data import DATA_DIR_ENV, FASHION_MNIST
from training.ensemble import assemble
from training.options import Precision, RunOptions
from training.render import TRAIN_STYLE
from training.studies import STUDIES, StudyOptions
from training.studies.architectures import MODELS as ARCHITECTURE_MODELS
from training.tasks import TASKS, for_architecture


def _share(text: str) -> float:
    """A share in [0, 1], for argparse."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a share between 0 and 1")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--data-dir", help=f"folder of the data set's IDX files (MNIST: default ${DATA_DIR_ENV}; "
                         f"Fashion-MNIST: ${FASHION_MNIST.env} or {FASHION_MNIST.system_dirs[0]}; else download)")
        sub.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
        sub.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")

    train = commands.add_parser("train", help="train a model and write its checkpoint, plots and metrics")
    train.add_argument("task", choices=sorted(TASKS))
    common(train)
    train.add_argument("--out", type=Path, help="checkpoint path (default weights/<task>.pt)")
    train.add_argument("--epochs", type=int)
    train.add_argument("--seed", type=int, default=0, help="seeds initialisation, batch order and augmentation")
    train.add_argument("--split-seed", type=int, default=0,
                       help="classifiers: seeds which training images are held out for validation; fixed by default, "
                            "so that models trained from different seeds are validated (and ensembled) on the same images")
    train.add_argument("--label-noise", type=float, default=0.0, metavar="RATE", help="flip this share of training labels")
    train.add_argument("--loss", choices=["bce", "gce"], default="bce",
                       help="sequence model: cross-entropy, or generalized cross-entropy (robust to label noise)")
    train.add_argument("--batch-size", type=int)
    train.add_argument("--lr", type=float, help="peak learning rate")
    train.add_argument("--val-size", type=int, default=5000, help="training images held out for validation")
    train.add_argument("--limit", type=int, help="train on only this many images (smoke runs)")
    train.add_argument("--steps-per-epoch", type=int, help="line reader: batches of fresh strips per epoch (default 1,500)")
    train.add_argument("--time-limit", type=float, help="line reader: seconds after which no new epoch starts")
    train.add_argument("--workers", type=int, help="line reader: processes rendering training strips (default: CPUs - 1)")
    train.add_argument("--precision", choices=get_args(Precision), default="fp32",
                       help="line reader: bf16 runs the forward pass under bfloat16 autocast (1.5x faster on a CPU "
                            "with AVX512-BF16 or AMX, and on GPUs; emulated and far slower on other CPUs); weights, "
                            "optimiser and CTC loss stay fp32")
    train.add_argument("--mnist-share", type=_share, metavar="SHARE",
                       help="line reader: share of plain MNIST-made strips (black on white) among the training strips "
                            f"(default {TRAIN_STYLE.mnist_share})")
    train.add_argument("--ballpoint-share", type=_share, metavar="SHARE",
                       help="line reader: share of training strips written with a ballpoint, strokes 3-7%% of the "
                            f"digit height instead of MNIST's 12%% (default {TRAIN_STYLE.ballpoint_rate})")
    train.add_argument("--tilt-share", type=_share, metavar="SHARE",
                       help=f"line reader: share of training strips rotated up to {TRAIN_STYLE.max_tilt:g} degrees uphill or "
                            f"downhill, as if captured askew (default {TRAIN_STYLE.tilt_rate})")
    train.add_argument("--digit-scale", type=float, nargs=2, metavar=("LOW", "HIGH"),
                       help="line reader: each digit's size against the row's is drawn from this range "
                            f"(default {TRAIN_STYLE.digit_scale[0]} {TRAIN_STYLE.digit_scale[1]})")
    train.add_argument("--anchor", type=float, default=0.0, metavar="WEIGHT",
                       help="line reader, with --init-from: hold the network's outputs to the starting network's on "
                            "the strips that one reads right (KL divergence, this weight against the CTC loss)")
    train.add_argument("--reshape-digits", action="store_true",
                       help="line reader: draw each digit through the digit model's affine augmentation (rotation, "
                            "scale, shear) before it is written into a strip")
    train.add_argument("--teacher", type=Path,
                       help="digit, fashion: a checkpoint of the same task (an ensemble, say) whose outputs the run learns "
                            "from as well as from the labels (knowledge distillation); it must hold out the same validation split")
    train.add_argument("--distill-weight", type=_share, default=RunOptions.distill_weight, metavar="SHARE",
                       help="with --teacher: share of the loss that is the teacher's, the rest the labels' "
                            f"(default {RunOptions.distill_weight})")
    train.add_argument("--init-from", type=Path, help="DigitNet checkpoint to start the encoder from (sequence, digit-sum), "
                       "or a LineReader checkpoint to continue training (line-reader)")

    ensemble = commands.add_parser("ensemble", help="join checkpoints of one task trained from different seeds into one "
                                   "checkpoint that averages their probabilities")
    ensemble.add_argument("task", choices=sorted(name for name, task in TASKS.items() if task.ensemble))
    ensemble.add_argument("members", type=Path, nargs="+", help="the member checkpoints (same recipe, different --seed)")
    common(ensemble)
    ensemble.add_argument("--out", type=Path, help="checkpoint path (default weights/<task>.pt)")

    evaluate = commands.add_parser("evaluate", help="recompute a checkpoint's test metrics")
    evaluate.add_argument("checkpoint", type=Path)
    common(evaluate)

    study = commands.add_parser("study", help="run one of the studies; writes a Markdown report and figures")
    study.add_argument("name", choices=sorted(STUDIES))
    common(study)
    study.add_argument("--checkpoint", type=Path, default=StudyOptions.checkpoint, help="the digit checkpoint studied")
    study.add_argument("--out", type=Path, default=StudyOptions.out, help="folder for the report and its figures")
    study.add_argument("--seed", type=int, default=0)
    study.add_argument("--epochs", type=int, help="label-noise, architectures: epochs per training run (default: the study's)")
    study.add_argument("--limit", type=int, help="label-noise, architectures: train on only this many images (smoke runs)")
    study.add_argument("--fashion-data-dir", help="architectures: folder of the Fashion-MNIST IDX files "
                       "(default $FASHION_MNIST_DATA_DIR, else Debian's dataset-fashion-mnist, else download)")
    study.add_argument("--datasets", nargs="+", choices=["fashion", "mnist"], default=["fashion", "mnist"],
                       help="architectures: the tables to (re)compute; the report shows every table computed")
    study.add_argument("--models", nargs="+", choices=[*ARCHITECTURE_MODELS, "ours"],
                       help="architectures: re-run only these rows; the others are read from the stored table "
                            "(the served checkpoint's row is always re-scored; 'ours' alone retrains nothing)")
    study.add_argument("--setting", choices=["frozen-encoder", "end-to-end"], default="frozen-encoder",
                       help="label-noise: the digit model's encoder frozen, or the whole CNN-LSTM from random weights "
                            "(the original study's setting)")
    study.add_argument("--seeds", type=int, default=1, help="label-noise end to end: seeds per configuration")
    study.add_argument("--rates", type=float, nargs="+", choices=[0.0, 0.2, 0.4],
                       help="label-noise end to end: train only these flip rates (runs already stored are kept)")
    study.add_argument("--losses", nargs="+", choices=["bce", "gce"], help="label-noise end to end: train only these losses")
    study.add_argument("--jobs", type=int, default=1,
                       help="architectures: train this many cross-validation folds at once, in as many processes")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if getattr(args, "digit_scale", None) and not 0 < args.digit_scale[0] <= args.digit_scale[1]:
        parser.error("--digit-scale takes LOW HIGH with 0 < LOW <= HIGH")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.command == "train":
        task = TASKS[args.task]
        if args.teacher and not task.distils:
            parser.error(f"--teacher: {args.task} does not learn from a teacher; "
                         f"{', '.join(name for name, t in TASKS.items() if t.distils)} do")
        world = distributed.current()
        if world.size > 1 and not task.distributed:
            capable = ", ".join(name for name, t in TASKS.items() if t.distributed)
            raise SystemExit(f"{args.task} trains in one process only; under torchrun: {capable}")
        options = RunOptions(
            out=args.out or Path("weights") / f"{args.task.replace('-', '_')}.pt",
            data_dir=args.data_dir,
            epochs=args.epochs or task.epochs,
            seed=args.seed,
            split_seed=args.split_seed,
            device=args.device,
            label_noise=args.label_noise,
            loss=args.loss,
            batch_size=args.batch_size or task.batch_size,
            lr=args.lr or task.lr,
            val_size=args.val_size,
            limit=args.limit,
            init_from=args.init_from,
            threads=args.threads,
            workers=args.workers,
            time_limit=args.time_limit,
            steps_per_epoch=args.steps_per_epoch,
            precision=args.precision,
            mnist_share=args.mnist_share,
            ballpoint_share=args.ballpoint_share,
            tilt_share=args.tilt_share,
            digit_scale=tuple(args.digit_scale) if args.digit_scale else None,
            anchor=args.anchor,
            reshape_digits=args.reshape_digits,
            teacher=args.teacher,
            distill_weight=args.distill_weight,
        )
        path = task.train(options)
        if not world.main:
            return 0
        checkpoint = load_checkpoint(path)
        print(json.dumps({"checkpoint": str(path), "sha256": checkpoint.sha256, "metrics": checkpoint.metadata["metrics"],
                          "train_seconds": checkpoint.metadata["train_seconds"]}, indent=2))
        return 0

    if args.command == "study":
        report = STUDIES[args.name](StudyOptions(data_dir=args.data_dir, out=args.out, checkpoint=args.checkpoint,
                                                 device=args.device, seed=args.seed, epochs=args.epochs, limit=args.limit,
                                                 fashion_data_dir=args.fashion_data_dir, datasets=tuple(args.datasets),
                                                 models=tuple(args.models) if args.models else None, jobs=args.jobs,
                                                 setting=args.setting, seeds=args.seeds,
                                                 rates=tuple(args.rates) if args.rates else None,
                                                 losses=tuple(args.losses) if args.losses else None))
        print(f"wrote {report}")
        return 0

    device = select_device(args.device)
    if args.command == "ensemble":
        spec = TASKS[args.task].ensemble
        assert spec is not None  # argparse offers only the tasks that have one
        path = assemble(args.members, args.out or Path("weights") / f"{args.task.replace('-', '_')}.pt", spec,
                        args.data_dir, device)
        checkpoint = load_checkpoint(path)
        print(json.dumps({"checkpoint": str(path), "sha256": checkpoint.sha256, "metrics": checkpoint.metadata["metrics"],
                          "members": checkpoint.metadata["members"]}, indent=2))
        return 0

    checkpoint = load_checkpoint(args.checkpoint, map_location=device)
    metrics = for_architecture(checkpoint.metadata["architecture"]).evaluate(checkpoint, args.data_dir, device)
    recorded = checkpoint.metadata.get("metrics", {})
    print(json.dumps({"checkpoint": str(args.checkpoint), "sha256": checkpoint.sha256, "metrics": metrics,
                      "recorded": {k: recorded.get(k) for k in metrics}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
