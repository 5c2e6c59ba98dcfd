"""The studies' commands on the committed digit checkpoint and the real MNIST test split."""

from __future__ import annotations

import re

import pytest
from PIL import Image

from tests.conftest import WEIGHTS
from training.cli import main


def _run(name: str, mnist_dir, tmp_path) -> str:
    assert main(["study", name, "--data-dir", str(mnist_dir), "--device", "cpu", "--out", str(tmp_path),
                 "--checkpoint", str(WEIGHTS / "digit.pt")]) == 0
    return (tmp_path / f"{name}.md").read_text()


def test_error_gallery_shows_every_test_error(mnist_dir, digit_checkpoint, tmp_path):
    report = _run("error-gallery", mnist_dir, tmp_path)
    errors = round(digit_checkpoint.metadata["metrics"]["test_error"] * 10_000)
    assert f"**{100 * digit_checkpoint.metadata['metrics']['test_accuracy']:.2f}% accuracy" in report
    assert f"({errors} digits)" in report
    every_error = report.split("## Every error")[1]
    rows = re.findall(r"^\| (\d+) \| (\d) \| (\d) \|", every_error, re.MULTILINE)
    assert len(rows) == errors and all(true != predicted for _, true, predicted in rows)
    pairs = report.split("## Confusion pairs")[1].split("## Every error")[0]
    assert sum(int(n) for n in re.findall(r"^\| \d \| \d \| (\d+) \|$", pairs, re.MULTILINE)) == errors
    with Image.open(tmp_path / "error-gallery.png") as figure:
        assert figure.format == "PNG" and figure.width > 1000


def test_calibration_reproduces_the_recorded_ece(mnist_dir, digit_checkpoint, tmp_path):
    report = _run("calibration", mnist_dir, tmp_path)
    metrics = digit_checkpoint.metadata["metrics"]
    assert f"| before (T = 1) | {100 * metrics['test_ece_uncalibrated']:.3f}% |" in report
    assert f"| after (T = {metrics['temperature']:.3f}) | {100 * metrics['test_ece']:.3f}% |" in report
    bins = re.findall(r"^\| \d\.\d{3}-\d\.\d{3} \| (\d+) \|", report, re.MULTILINE)
    assert len(bins) == 15 and sum(int(n) for n in bins) == 10_000
    with Image.open(tmp_path / "calibration.png") as figure:
        assert figure.format == "PNG"


def test_end_to_end_training_flips_the_asked_share_from_a_random_encoder(mnist_dir, digit_checkpoint):
    import torch

    from training.data import prepare
    from training.digit import load_init
    from training.studies import end_to_end

    # The encoder starts from random weights: nothing of the digit model's, different per seed.
    first, other = end_to_end.new_model(0, torch.device("cpu")), end_to_end.new_model(1, torch.device("cpu"))
    trained = load_init(digit_checkpoint.path, torch.device("cpu")).model.encoder.state_dict()
    for name, value in first.encoder.state_dict().items():
        if value.is_floating_point() and value.numel() > 1 and float(value.std()) > 0 and "running" not in name:
            assert not torch.allclose(value, trained[name]) and not torch.allclose(value, other.encoder.state_dict()[name])

    data = prepare(str(mnist_dir), 5000, 0, limit=400)
    run, model = end_to_end.train_run(data, 0.4, "gce", 0, torch.device("cpu"), epochs=2, sequences_per_epoch=1600,
                                      max_batches=8)
    # 2 epochs x 8 batches x 64 sequences = 1,024 labels: 40% flipped is 40% +- 4.6 (3 sigma).
    assert abs(run.flipped_share - 0.4) < 0.046, run.flipped_share
    assert [h["epoch"] for h in run.history] == [1, 2] and 0.0 <= run.test_accuracy <= 1.0
    assert not torch.allclose(model.encoder.conv[0].weight, first.encoder.conv[0].weight)  # the encoder itself learnt


def test_end_to_end_study_writes_its_part_beside_the_frozen_one(mnist_dir, tmp_path):
    (tmp_path / "label-noise.md").write_text("# Weak supervision\n\nthe frozen-encoder results\n")
    assert main(["study", "label-noise", "--setting", "end-to-end", "--data-dir", str(mnist_dir), "--device", "cpu",
                 "--out", str(tmp_path), "--epochs", "1", "--limit", "200"]) == 0
    report = (tmp_path / "label-noise.md").read_text()
    assert report.index("the frozen-encoder results") < report.index("## End to end: the original's setting")
    assert report.count("\n| 0% |") == 1 and "digit accuracy of the linear probe" in report  # one results row per rate
    assert (tmp_path / "label-noise-end-to-end.png").stat().st_size > 0
    assert (tmp_path / "label-noise-evidence.png").stat().st_size > 0


def test_generalized_cross_entropy_bounds_what_a_flipped_label_costs():
    import torch

    from training.sequence import GCE_Q, sequence_loss

    targets = torch.tensor([1.0])
    confident_right, confident_wrong = torch.tensor([8.0], requires_grad=True), torch.tensor([-8.0], requires_grad=True)
    assert sequence_loss("gce", confident_right, targets) < 1e-3
    wrong_gce, wrong_bce = sequence_loss("gce", confident_wrong, targets), sequence_loss("bce", confident_wrong, targets)
    assert float(wrong_gce) <= 1 / GCE_Q and float(wrong_bce) > 7.9  # cross-entropy grows without bound
    (gce_grad,) = torch.autograd.grad(wrong_gce, confident_wrong)
    (bce_grad,) = torch.autograd.grad(sequence_loss("bce", confident_wrong, targets), confident_wrong)
    assert abs(float(gce_grad)) < 0.01 * abs(float(bce_grad))  # a likely-flipped label barely pulls
    assert torch.isclose(sequence_loss("gce", torch.tensor([0.0]), targets), torch.tensor((1 - 0.5 ** GCE_Q) / GCE_Q))


def test_architectures_study_table(mnist_dir, tmp_path):
    """A one-epoch run on 300 MNIST images: every architecture trains, the RNN and LSTM through
    five folds, and our best CNN is the committed checkpoint, scored on the whole test split."""
    import json

    import torch

    from model.checkpoint import load_checkpoint

    assert main(["study", "architectures", "--data-dir", str(mnist_dir), "--device", "cpu", "--out", str(tmp_path),
                 "--datasets", "mnist", "--epochs", "1", "--limit", "300"]) == 0
    result = json.loads((tmp_path / "architectures-mnist.json").read_text())
    names = [row["model"].split(" (")[0] for row in result["rows"]]
    served = json.loads((WEIGHTS / "digit" / "metrics.json").read_text())
    architecture = load_checkpoint(WEIGHTS / "digit.pt").metadata["architecture"]
    assert names == ["Conv-MaxPool", "Strided-Conv", "Dropout + BN + L2 CNN", "RNN", "LSTM", f"ours: {architecture}"]
    assert [len(row.get("cv_folds", [])) for row in result["rows"]] == [0, 0, 0, 5, 5, 0]
    assert [row.get("epochs") for row in result["rows"]] == [1, 1, 1, 1, 2, None]  # the LSTM trains 1.5x the epochs
    for row in result["rows"]:
        assert sum(map(sum, row["confusion"])) == 10_000  # one model's: the final one, for the cross-validated rows
        assert 0 <= row["f1"] <= 1 and row["parameters"] > 0
    best = result["rows"][-1]
    assert best["accuracy"] == pytest.approx(served["metrics"]["test_accuracy"], abs=2e-4)
    report = (tmp_path / "architectures.md").read_text()
    assert "## MNIST" in report and f"| ours: {architecture}" in report and "## Fashion-MNIST" not in report
    with Image.open(tmp_path / "architectures-mnist-confusion.png") as figure:
        assert figure.format == "PNG"

    # Re-run one row, its folds in two processes: only that row changes; the rest is read back.
    assert main(["study", "architectures", "--data-dir", str(mnist_dir), "--device", "cpu", "--out", str(tmp_path),
                 "--datasets", "mnist", "--epochs", "1", "--limit", "300", "--models", "rnn", "--jobs", "2"]) == 0
    rerun = json.loads((tmp_path / "architectures-mnist.json").read_text())
    assert [row.get("key") for row in rerun["rows"]] == ["conv-maxpool", "strided-conv", "regularised-cnn", "rnn", "lstm", None]
    assert [r for i, r in enumerate(rerun["rows"]) if i != 3] == [r for i, r in enumerate(result["rows"]) if i != 3]
    rnn = rerun["rows"][3]
    assert (rnn["parallel_folds"], rnn["threads"], len(rnn["cv_folds"])) == (2, max(1, torch.get_num_threads() // 2), 5)
    assert sum(map(sum, rnn["confusion"])) == 10_000 and len(rnn["fold_accuracies"]) == 5 and rnn != result["rows"][3]


def test_architectures_rows_rerun_only_onto_a_stored_table(mnist_dir, tmp_path):
    with pytest.raises(SystemExit, match="no stored mnist result for conv-maxpool, strided-conv, regularised-cnn, rnn"):
        main(["study", "architectures", "--data-dir", str(mnist_dir), "--device", "cpu", "--out", str(tmp_path),
              "--datasets", "mnist", "--epochs", "1", "--limit", "300", "--models", "lstm"])


def test_cross_validated_rows_train_five_fold_models_and_a_final_one_on_everything(monkeypatch):
    """The RNN's and LSTM's test columns come from a model trained on the whole training split,
    like every other row's; the five fold models each leave their fold out and are scored on it."""
    from dataclasses import replace

    import torch

    from training.data import DigitData
    from training.studies import architectures
    from training.studies.common import StudyOptions

    trained: list[int] = []
    real_fit = architectures.fit

    def recording(baseline, data, *args):
        trained.append(len(data.labels))
        return real_fit(baseline, data, *args)

    monkeypatch.setattr(architectures, "fit", recording)
    generator = torch.Generator().manual_seed(0)
    train = DigitData(torch.randn(300, 1, 28, 28, generator=generator), torch.randint(0, 10, (300,), generator=generator))
    test = DigitData(torch.randn(50, 1, 28, 28, generator=generator), torch.randint(0, 10, (50,), generator=generator))
    table = replace(architectures.TABLES["mnist"], epochs=1)
    rnn = next(b for b in architectures.BASELINES if b.key == "rnn")
    row = architectures.run_baseline(rnn, train, test, table, StudyOptions(), torch.device("cpu"))
    assert trained == [240] * 5 + [300]
    assert sum(map(sum, row["confusion"])) == 50 and len(row["fold_accuracies"]) == len(row["cv_folds"]) == 5
    assert row["fold_accuracy"] == pytest.approx(sum(row["fold_accuracies"]) / 5)


def test_augmented_baselines_train_on_their_tables_augmentation():
    """The LSTM trains on mirrored Fashion-MNIST batches (drawn from the run's seeded generator)
    and on plain MNIST digits; the other baselines never see augmented images."""
    import torch

    from training.augment import mirror
    from training.data import DigitData
    from training.studies.architectures import BASELINES, TABLES, fit

    assert [b.key for b in BASELINES if b.augmented] == ["lstm"]
    assert TABLES["fashion"].augment is mirror and TABLES["mnist"].augment is None
    seen: list[torch.Tensor] = []

    def recording(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        assert isinstance(generator, torch.Generator)
        seen.append(images)
        return images.flip(-1)

    data = DigitData(torch.randn(300, 1, 28, 28), torch.randint(0, 10, (300,)))
    fit(BASELINES[0], data, 1, 0, torch.device("cpu"), "smoke", recording)
    assert [len(batch) for batch in seen] == [128, 128, 44]


def test_macro_metrics_weigh_every_class_the_same():
    import torch

    from training.studies.architectures import classification_metrics

    labels = torch.tensor([0] * 8 + [1] * 2)
    logits = torch.zeros(10, 2)
    logits[:, 0] = 1.0  # always class 0: 80% accurate, but class 1 is never found
    metrics = classification_metrics(logits, labels)
    assert metrics["accuracy"] == pytest.approx(0.8)
    assert metrics["recall"] == pytest.approx(0.5)  # (1 + 0) / 2
    assert metrics["precision"] == pytest.approx(0.4)  # (0.8 + 0) / 2, an empty column counts as 0
    assert metrics["f1"] == pytest.approx((2 * 0.8 / 1.8) / 2)
    assert metrics["confusion"] == [[8, 0], [2, 0]]


def test_the_lstm_reads_each_row_through_a_learned_embedding_with_dropout():
    """The study's LSTM: each 28-pixel row becomes 128 features, which a bidirectional 2 x 128
    LSTM reads; dropout only while training, so a trained model's readings are repeatable."""
    import torch

    from training.studies.architectures import BASELINES
    from training.studies.baselines import RowReader

    lstm = next(b for b in BASELINES if b.key == "lstm").build()
    embedding = 28 * 128 + 128
    recurrent = 2 * (4 * 128 * (128 + 128) + 8 * 128) + 2 * (4 * 128 * (256 + 128) + 8 * 128)
    assert sum(p.numel() for p in lstm.parameters()) == embedding + recurrent + 256 * 10 + 10
    images = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    lstm.train()
    assert not torch.equal(lstm(images), lstm(images))
    lstm.eval()
    assert lstm(images).shape == (4, 10) and torch.equal(lstm(images), lstm(images))
    with pytest.raises(ValueError, match="readout must be 'last' or 'mean'"):
        RowReader("lstm", readout="max")
