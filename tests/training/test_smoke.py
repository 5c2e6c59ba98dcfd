"""A one-batch training run of each model through the real CLI, on real MNIST, and the line
reader's training pieces a run relies on (its bf16 loss, its scoring of test strips)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from model.architectures import LineReader
from model.checkpoint import load_checkpoint
from model.devices import native_bf16
from model.line import strip_to_line
from tests.conftest import WEIGHTS
from training.cli import main
from training.augment import AffineAugment
from training.digit import TASK
from training.line_reader import RenderedStrips, anchor_loss, collate, ctc_loss, evaluate_set
from training.render import TRAIN_STYLE, StripSet, render_strip
from training.strips import make_strip


@pytest.fixture(scope="module")
def smoke_digit(tmp_path_factory, mnist_dir):
    out = tmp_path_factory.mktemp("smoke") / "digit.pt"
    args = ["train", "digit", "--data-dir", str(mnist_dir), "--device", "cpu", "--limit", "64", "--epochs", "1",
            "--batch-size", "64", "--val-size", "64", "--out", str(out)]
    assert main(args) == 0
    return out


def _check_run(path, architecture, epochs=1, confusion=True):
    checkpoint = load_checkpoint(path)
    assert checkpoint.metadata["architecture"] == architecture
    assert len(checkpoint.metadata["history"]) == epochs
    artefacts = path.with_suffix("")
    assert (artefacts / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (artefacts / "confusion.png").exists() == confusion
    assert json.loads((artefacts / "metrics.json").read_text())["metrics"] == checkpoint.metadata["metrics"]
    return checkpoint


def test_digit_one_batch(smoke_digit):
    checkpoint = _check_run(smoke_digit, "DigitNet")
    assert checkpoint.metadata["hyperparameters"]["limit"] == 64
    for swap in TASK.swaps:  # what was swapped into the batches is on record, as configured
        assert checkpoint.metadata["hyperparameters"][swap.key] == repr(swap)
    assert 0.0 <= checkpoint.metadata["metrics"]["test_accuracy"] <= 1.0
    assert checkpoint.metadata["metrics"]["test_samples"] == 10000
    # The recorded validation accuracy is the chosen epoch's: the shipped weights' own.
    chosen = max(epoch["val_acc_ema"] for epoch in checkpoint.metadata["history"])
    assert checkpoint.metadata["metrics"]["val_accuracy"] == pytest.approx(chosen, abs=1e-6)


@pytest.mark.parametrize("task,architecture,confusion", [("sequence", "SequenceNet", True), ("digit-sum", "DigitSumNet", False)])
def test_one_batch_from_a_digit_encoder(task, architecture, confusion, smoke_digit, mnist_dir, tmp_path):
    out = tmp_path / f"{task}.pt"
    args = ["train", task, "--data-dir", str(mnist_dir), "--device", "cpu", "--limit", "64", "--epochs", "1",
            "--batch-size", "64", "--val-size", "64", "--init-from", str(smoke_digit), "--out", str(out),
            "--label-noise", "0.2"]
    assert main(args) == 0
    checkpoint = _check_run(out, architecture, confusion=confusion)
    assert checkpoint.metadata["hyperparameters"]["label_noise"] == 0.2


def test_sequence_with_the_robust_loss_chooses_on_noisy_validation(smoke_digit, mnist_dir, tmp_path):
    out = tmp_path / "sequence-gce.pt"
    args = ["train", "sequence", "--data-dir", str(mnist_dir), "--device", "cpu", "--limit", "64", "--epochs", "2",
            "--batch-size", "64", "--val-size", "64", "--init-from", str(smoke_digit), "--out", str(out),
            "--label-noise", "0.4", "--loss", "gce"]
    assert main(args) == 0
    checkpoint = _check_run(out, "SequenceNet", epochs=2)
    assert checkpoint.metadata["hyperparameters"]["loss"] == "gce"
    history = checkpoint.metadata["history"]
    assert all("val_acc_noisy" in epoch and "val_acc" in epoch for epoch in history)
    assert checkpoint.metadata["metrics"]["val_accuracy_noisy"] == max(epoch["val_acc_noisy"] for epoch in history)


def test_fashion_one_batch(fashion_dir, tmp_path):
    out = tmp_path / "fashion.pt"
    args = ["train", "fashion", "--data-dir", str(fashion_dir), "--device", "cpu", "--limit", "64", "--epochs", "1",
            "--batch-size", "64", "--val-size", "64", "--out", str(out)]
    assert main(args) == 0
    checkpoint = _check_run(out, "FashionNet")
    metadata = checkpoint.metadata
    assert metadata["labels"][0] == "T-shirt/top" and metadata["labels"][-1] == "Ankle boot"
    assert metadata["dataset"]["name"] == "Fashion-MNIST"
    assert checkpoint.preprocess.centre == "box" and checkpoint.preprocess.box == 28
    assert metadata["metrics"]["test_samples"] == 10000


def test_line_reader_trains_on_rendered_strips(mnist_dir, tmp_path, capsys):
    """A few batches of rendered strips, some tilted and some written with a ballpoint, digits of
    uneven sizes: the line reader trains with CTC, picks its epoch on
    validation strips of both generator styles, and records its test figures by condition and
    on MNIST-made strips; a second run continues from the first's weights, and stops at its time
    limit after one of its two epochs, training under bf16 autocast on MNIST-made strips alone,
    of reshaped digits."""
    out = tmp_path / "line_reader.pt"
    args = ["train", "line-reader", "--data-dir", str(mnist_dir), "--device", "cpu", "--limit", "64", "--epochs", "2",
            "--batch-size", "16", "--workers", "1", "--out", str(out)]
    assert main([*args, "--tilt-share", "0.5", "--ballpoint-share", "0.3", "--digit-scale", "0.7", "1.3"]) == 0
    checkpoint = _check_run(out, "LineReader", epochs=2, confusion=False)
    recorded = checkpoint.metadata["hyperparameters"]
    assert (recorded["tilt_share"], recorded["ballpoint_share"], tuple(recorded["digit_scale"])) == (0.5, 0.3, (0.7, 1.3))
    metrics = checkpoint.metadata["metrics"]
    for style in ("train_style", "dev_style"):
        for condition in ("clean", "paper", "marks", "touching", "cheque"):
            assert set(metrics[f"test_{style}_{condition}"]) == {"exact", "digit_error", "count_right", "contains_4_right"}
    assert metrics["test_accuracy"] == metrics["test_dev_style_cheque"]["exact"]
    assert {"val_acc", "val_acc_dev"} <= set(checkpoint.metadata["history"][0])
    assert not (out.with_suffix("") / "best_epoch.pt").exists()
    log_probs = checkpoint.model(torch.zeros(2, 1, 32, 64), torch.tensor([16, 8]))
    assert log_probs.shape == (2, 16, 11)
    again = tmp_path / "again.pt"
    assert main([*args[:-1], str(again), "--epochs", "2", "--time-limit", "0.001", "--init-from", str(out),
                 "--precision", "bf16", "--mnist-share", "1", "--reshape-digits"]) == 0
    metadata = _check_run(again, "LineReader", confusion=False).metadata
    # bf16 on a CPU that only emulates it is many times slower than fp32: the run says so
    assert ("no native bfloat16" in capsys.readouterr().err) == (not native_bf16(torch.device("cpu")))
    assert metadata["hyperparameters"]["init_from"] == "line_reader.pt"
    assert metadata["hyperparameters"]["precision"] == "bf16"
    assert metadata["hyperparameters"]["mnist_share"] == 1.0 and metadata["hyperparameters"]["reshape_digits"]
    assert metadata["hyperparameters"]["epochs_run"] == 1 and len(metadata["history"]) == 1
    with pytest.raises(SystemExit):  # a share is between 0 and 1
        main([*args, "--mnist-share", "1.5"])
    with pytest.raises(SystemExit):  # a range runs from low to high
        main([*args, "--digit-scale", "1.3", "0.7"])


def test_reshaped_digits_change_the_strips(mnist_test):
    """``--reshape-digits`` moves each digit by the affine augmentation before it is written: the
    stream still yields well-formed batches (digit targets that add up to their lengths), and no
    batch of its first pool is one of the plain stream's."""

    def first_pool(reshape: AffineAugment | None) -> list[dict[str, torch.Tensor]]:
        stream = iter(RenderedStrips(mnist_test, np.arange(500), seed=3, batch_size=8, reshape=reshape))
        return [next(stream) for _ in range(RenderedStrips.POOL)]

    plain, reshaped = first_pool(None), first_pool(AffineAugment())
    for batch in reshaped:
        assert int(batch["target_lengths"].sum()) == len(batch["targets"]) > 0
        assert batch["targets"].min() >= 0 and batch["targets"].max() <= 9
    assert not any(a["lines"].shape == b["lines"].shape and torch.equal(a["lines"], b["lines"])
                   for a in plain for b in reshaped)


def test_bf16_training_computes_the_same_ctc_loss(mnist_test):
    """Under bf16 autocast the committed line reader's CTC loss on rendered strips stays within
    a few per cent of fp32's (the loss itself is computed in fp32), and its gradients flow."""
    model = load_checkpoint(WEIGHTS / "line_reader.pt").model
    rng = np.random.default_rng(0)
    items = []
    for _ in range(8):
        pick = rng.integers(0, len(mnist_test.labels), 6)
        strip = render_strip(mnist_test.images[pick], mnist_test.labels[pick], rng, TRAIN_STYLE)
        items.append((strip_to_line(strip.image).pixels, strip.labels))
    batch = collate(items)
    model.eval()  # no dropout: the two passes see the same network
    full, half = (ctc_loss(model, batch, torch.device("cpu"), precision) for precision in ("fp32", "bf16"))
    assert half.dtype == torch.float32 and half.item() != full.item()  # the network did run in bf16
    assert abs(half.item() - full.item()) <= 0.05 * full.item() + 0.02
    half.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


def test_the_anchor_holds_a_continuation_to_what_its_start_reads_right(mnist_test):
    """``--anchor``: the KL term is zero while the network is still its anchor, grows as it moves
    away, and counts only strips the anchor reads right (none, for an untrained anchor)."""
    model = load_checkpoint(WEIGHTS / "line_reader.pt").model.eval()
    rng = np.random.default_rng(1)
    items = []
    for _ in range(8):
        pick = rng.integers(0, len(mnist_test.labels), 5)
        strip = make_strip(mnist_test.images[pick], mnist_test.labels[pick], rng)
        items.append((strip_to_line(strip.image).pixels, strip.labels))
    batch = collate(items)
    with torch.no_grad():
        start = model(batch["lines"], batch["steps"])
    assert anchor_loss(start, start, batch).item() == pytest.approx(0.0, abs=1e-6)
    plain = ctc_loss(model, batch, torch.device("cpu"))
    assert ctc_loss(model, batch, torch.device("cpu"), anchor=model, anchor_weight=1.0).item() == pytest.approx(plain.item(), abs=1e-5)

    moved = start + 0.5 * torch.randn(start.shape, generator=torch.Generator().manual_seed(0))
    assert anchor_loss(moved.log_softmax(-1), start, batch).item() > 0.01
    untrained = LineReader(**load_checkpoint(WEIGHTS / "line_reader.pt").metadata["arguments"]).eval()
    with torch.no_grad():
        guesses = untrained(batch["lines"], batch["steps"])
    assert anchor_loss(moved.log_softmax(-1), guesses, batch).item() == 0.0


def test_evaluation_scores_a_strip_with_nothing_on_it_as_no_digits_read(mnist_test):
    """A test strip in which no ink stands out is what the service answers 422 no_digit_found
    for: evaluation reads it as no digits (right when its truth is empty, wrong otherwise)
    instead of stopping the run."""
    model = load_checkpoint(WEIGHTS / "line_reader.pt").model
    blank = Image.new("L", (200, 60), 235)
    strip = make_strip(mnist_test.images[:5], mnist_test.labels[:5], np.random.default_rng(0))
    scores = evaluate_set(model, StripSet("blank", [blank, strip.image], [[], strip.labels]), torch.device("cpu"))
    assert scores["exact"] == 1.0 and scores["count_right"] == 1.0
    wrong = evaluate_set(model, StripSet("blank", [blank, strip.image], [[7], strip.labels]), torch.device("cpu"))
    assert wrong["exact"] == 0.5 and wrong["digit_error"] == 1 / 6


def test_framed_scans_are_what_the_service_makes_of_such_uploads(mnist_test):
    """The digits scanned to fill their frame are sent through the service's own preprocessing:
    the same seed gives the same scans, many fill their frame (a quarter or more of the border is
    the other colour), and each is exactly what ``preprocess_digit`` makes of its scan."""
    from model.preprocess import normalise, preprocess_digit
    from training.augment import FramedScans

    framed = FramedScans()
    images, labels = mnist_test.images[:300], mnist_test.labels[:300]
    scans, usable = framed.prepare(images, labels, seed=3)
    again, _ = framed.prepare(images, labels, seed=3)
    assert scans.shape == (300, 1, 28, 28) and usable.float().mean() > 0.95 and torch.equal(scans, again)
    rng = np.random.default_rng(3)
    raw = [framed.draw(image, int(label), rng) for image, label in zip(images, labels, strict=True)]
    light = [np.mean(np.concatenate([r[0], r[-1], r[:, 0], r[:, -1]]) > 0.5) for r in raw]
    assert np.mean([min(share, 1 - share) >= 0.25 for share in light]) > 0.2
    first = next(i for i in range(300) if usable[i])
    assert torch.allclose(scans[first], normalise(preprocess_digit(raw[first])[None])[0])


def test_european_digits_are_flagged_ones_and_crossed_sevens(mnist_test):
    """Only 1s and 7s have a European drawing; most 1s gain a flag (ink where the plain digit has
    none, up and left of its stem), some 7s a bar; each is what the service makes of that upload."""
    from model.preprocess import normalise, preprocess_digit
    from training.augment import EuropeanDigits

    european = EuropeanDigits()
    images, labels = mnist_test.images[:600], mnist_test.labels[:600]
    drawings, usable = european.prepare(images, labels, seed=4)
    assert torch.equal(usable, torch.from_numpy(np.isin(labels, (1, 7))))
    rng = np.random.default_rng(4)
    raw = [european.draw(image, int(label), rng) for image, label in zip(images, labels, strict=True)]
    assert all((r is None) == (label not in (1, 7)) for r, label in zip(raw, labels, strict=True))
    changed = {digit: np.mean([np.abs((1 - r) * 255 - image).max() > 100
                               for r, image, label in zip(raw, images, labels, strict=True) if label == digit])
               for digit in (1, 7)}
    assert changed[1] > 0.7 and 0.3 < changed[7] < 0.7
    first = int(np.flatnonzero(usable.numpy())[0])
    assert torch.allclose(drawings[first], normalise(preprocess_digit(raw[first])[None])[0])


def test_the_anchor_needs_a_network_to_start_from(mnist_dir, tmp_path):
    with pytest.raises(SystemExit, match="--init-from"):
        main(["train", "line-reader", "--data-dir", str(mnist_dir), "--device", "cpu", "--anchor", "1",
              "--limit", "16", "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "8", "--workers", "0",
              "--out", str(tmp_path / "line_reader.pt")])


def test_broken_strokes_erase_a_gap_in_the_ink_of_the_share_asked_for(mnist_test):
    """``WritingAugment.broken`` erases a short band of ink from about its share of the digits and
    leaves the rest as they were; off (the default), it erases nothing."""
    from training.augment import AffineAugment, WritingAugment

    still = AffineAugment(degrees=0.0, scale=(1.0, 1.0), shear_degrees=0.0, translate=0.0)
    plain = dict(thicken=0.0, thin=0.0, low_resolution=0.0, binary=0.0, affine=still)
    mean, std = WritingAugment.mean, WritingAugment.std
    inputs = (torch.from_numpy(mnist_test.images[:400].astype(np.float32) / 255)[:, None] - mean) / std
    ink_before = (inputs * std + mean).sum(dim=(1, 2, 3))
    broken = WritingAugment(broken=0.5, **plain)(inputs, torch.Generator().manual_seed(1))
    lost = ink_before - (broken * std + mean).sum(dim=(1, 2, 3))
    assert (lost > -1e-3).all()  # ink is only ever erased
    gapped = lost > 1.0  # at least a pixel's worth of ink gone
    assert 0.4 < gapped.float().mean() < 0.6
    assert (lost[gapped] < 0.25 * ink_before[gapped]).all()  # a gap, not the digit
    unchanged = WritingAugment(**plain)(inputs, torch.Generator().manual_seed(1))
    assert torch.allclose(unchanged, inputs, atol=1e-5)


def test_digit_checkpoints_of_different_seeds_join_into_an_ensemble(smoke_digit, mnist_dir, tmp_path):
    """Two seeds of the digit recipe, held out on one validation split, join into one checkpoint
    that reads them together, records each member, starts the models built on a digit encoder
    from its first member, and teaches one network; members that differ in more than their seed
    are refused, and so is a teacher that held out another split."""
    common = ["--data-dir", str(mnist_dir), "--device", "cpu"]
    small = ["--limit", "64", "--epochs", "1", "--batch-size", "64", "--val-size", "64"]
    second = tmp_path / "digit-1.pt"
    assert main(["train", "digit", *common, *small, "--seed", "1", "--out", str(second)]) == 0
    out = tmp_path / "ensemble.pt"
    assert main(["ensemble", "digit", str(smoke_digit), str(second), *common, "--out", str(out)]) == 0

    ensemble = load_checkpoint(out)
    members = [load_checkpoint(smoke_digit), load_checkpoint(second)]
    assert ensemble.metadata["architecture"] == "DigitEnsemble" and ensemble.metadata["arguments"]["members"] == 2
    assert [m["sha256"] for m in ensemble.metadata["members"]] == [m.sha256 for m in members]
    assert [m["seed"] for m in ensemble.metadata["members"]] == [0, 1]
    assert json.loads((tmp_path / "ensemble" / "metrics.json").read_text())["metrics"] == ensemble.metadata["metrics"]
    assert (tmp_path / "ensemble" / "members" / "seed-1" / "curves.png").is_file()
    images = torch.randn(4, 1, 28, 28)
    with torch.inference_mode():
        mean = torch.stack([m.model(images).softmax(-1) for m in members]).mean(0)
        t = ensemble.metadata["metrics"]["temperature"]
        torch.testing.assert_close(ensemble.model(images).softmax(-1), (mean ** (1 / t)) / (mean ** (1 / t)).sum(-1, keepdim=True))

    start = tmp_path / "sequence.pt"
    assert main(["train", "sequence", *common, *small, "--init-from", str(out), "--out", str(start)]) == 0
    encoder = load_checkpoint(start).model.encoder.state_dict()
    assert all(torch.equal(v, members[0].model.encoder.state_dict()[k]) for k, v in encoder.items())

    with pytest.raises(ValueError, match="different seeds"):
        main(["ensemble", "digit", str(smoke_digit), str(smoke_digit), *common, "--out", str(tmp_path / "same.pt")])
    other_split = tmp_path / "digit-2.pt"
    assert main(["train", "digit", *common, "--limit", "64", "--epochs", "1", "--batch-size", "64", "--val-size", "32",
                 "--seed", "2", "--out", str(other_split)]) == 0
    with pytest.raises(ValueError, match="validation split"):
        main(["ensemble", "digit", str(smoke_digit), str(other_split), *common, "--out", str(tmp_path / "mixed.pt")])

    # One network taught by the ensemble: it records its teacher, and refuses one that trained on its validation digits.
    student = tmp_path / "student.pt"
    assert main(["train", "digit", *common, *small, "--teacher", str(out), "--distill-weight", "0.8", "--out", str(student)]) == 0
    taught = load_checkpoint(student)
    assert taught.metadata["architecture"] == "DigitNet"
    distillation = taught.metadata["hyperparameters"]["distillation"]
    assert (distillation["teacher_sha256"], distillation["teacher"], distillation["weight"]) == (ensemble.sha256, "DigitEnsemble", 0.8)
    assert taught.metadata["hyperparameters"]["teacher"] == "ensemble.pt"
    with pytest.raises(ValueError, match="validation split"):
        main(["train", "digit", *common, *small, "--teacher", str(other_split), "--out", str(tmp_path / "refused.pt")])
    with pytest.raises(SystemExit):
        main(["train", "sequence", *common, *small, "--teacher", str(out), "--out", str(tmp_path / "refused.pt")])
