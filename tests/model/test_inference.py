"""The serving form of each network gives the checkpoint's answers (model/inference.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.checkpoint import Checkpoint
from model.inference import ChunkedEncoder, for_inference
from model.preprocess import normalise, preprocess_digit

CPU = torch.device("cpu")


def _inputs(split, count: int) -> torch.Tensor:
    arrays = np.stack([preprocess_digit(split.images[i].astype(np.float32) / 255) for i in range(count)])
    return normalise(arrays)


def test_digit_serving_form_reads_the_test_digits_as_the_checkpoint_does(mnist_test, digit_checkpoint: Checkpoint) -> None:
    images = _inputs(mnist_test, 1000)
    served = for_inference(digit_checkpoint.model, CPU)
    with torch.inference_mode():
        expected = digit_checkpoint.model.eval()(images).softmax(1)
        got = served(images).softmax(1)
    assert torch.equal(got.argmax(1), expected.argmax(1))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert any(isinstance(m, ChunkedEncoder) for m in served.modules()), "the encoder should be compiled"
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in served.modules()), "BatchNorm should be folded"


def test_an_ensembles_serving_form_compiles_every_member(mnist_test) -> None:
    from model.architectures import DigitEnsemble

    torch.manual_seed(0)
    ensemble = DigitEnsemble(members=3, channels=(8, 16), features=32).eval()
    ensemble.temperature.fill_(0.8)
    images = _inputs(mnist_test, 200)
    served = for_inference(ensemble, CPU)
    with torch.inference_mode():
        torch.testing.assert_close(served(images), ensemble(images), atol=1e-4, rtol=0)
    assert sum(isinstance(m, ChunkedEncoder) for m in served.modules()) == 3
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in served.modules())


def test_sequence_and_sum_serving_forms_match(mnist_test, sequence_checkpoint: Checkpoint, digit_sum_checkpoint: Checkpoint) -> None:
    images = _inputs(mnist_test, 300)
    lengths = torch.tensor([3, 30, 17, 250])
    numbers = torch.arange(-150, 150)
    with torch.inference_mode():
        expected_logits = sequence_checkpoint.model.eval()(images, lengths)
        got_logits = for_inference(sequence_checkpoint.model, CPU)(images, lengths)
        expected_digits, expected_sums = digit_sum_checkpoint.model.eval()(images, numbers)
        got_digits, got_sums = for_inference(digit_sum_checkpoint.model, CPU)(images, numbers)
    torch.testing.assert_close(got_logits, expected_logits, atol=1e-4, rtol=0)
    assert torch.equal(got_digits.argmax(1), expected_digits.argmax(1))
    assert torch.equal(torch.round(got_sums), torch.round(expected_sums))


@pytest.mark.parametrize("count", [1, 7, 128, 129, 300])
def test_chunking_changes_nothing(mnist_test, digit_checkpoint: Checkpoint, count: int) -> None:
    images = _inputs(mnist_test, count)
    whole = for_inference(digit_checkpoint.model, CPU, chunk=10_000)
    chunked = for_inference(digit_checkpoint.model, CPU, chunk=128)
    with torch.inference_mode():
        torch.testing.assert_close(chunked(images), whole(images), atol=1e-5, rtol=0)


def test_the_checkpoint_module_is_left_untouched(digit_checkpoint: Checkpoint) -> None:
    before = {k: v.clone() for k, v in digit_checkpoint.model.state_dict().items()}
    for_inference(digit_checkpoint.model, CPU)
    after = digit_checkpoint.model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_usable_cpus_follows_the_affinity_mask_and_the_cgroup_quota(tmp_path) -> None:
    import os

    from model.devices import usable_cpus

    affinity = len(os.sched_getaffinity(0))
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("max 100000\n")  # no quota
    assert usable_cpus(cpu_max) == affinity
    cpu_max.write_text("50000 100000\n")  # --cpus 0.5: still one thread
    assert usable_cpus(cpu_max) == 1
    cpu_max.write_text(f"{100000 * (affinity + 3)} 100000\n")  # a quota above the mask: the mask wins
    assert usable_cpus(cpu_max) == affinity
    assert usable_cpus(tmp_path / "absent") == affinity  # cgroup v1 or no cgroup file


def test_garment_serving_form_matches_the_network(fashion_test) -> None:
    """FashionNet compiles whole (no separate encoder): same answers, BatchNorm folded, chunked."""
    from model.architectures import FashionNet
    from model.preprocess import FASHION_CONFIG

    torch.manual_seed(0)
    model = FashionNet(channels=(8, 16, 32), features=32).eval()
    with torch.no_grad():  # batch-norm statistics that are not the identity, as after training
        for module in model.modules():
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    arrays = np.stack([preprocess_digit(raw.astype(np.float32) / 255, FASHION_CONFIG) for raw in fashion_test.images[:300]])
    images = normalise(arrays, FASHION_CONFIG)
    served = for_inference(model, CPU, chunk=128)
    with torch.inference_mode():
        expected, got = model(images), served(images)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert isinstance(served, ChunkedEncoder)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in served.modules())


def test_line_reader_serving_form_reads_as_the_checkpoint_does(mnist_test, line_reader_checkpoint: Checkpoint) -> None:
    """The compiled convolutions (BatchNorm folded, channels-last) change no reading, at any width."""
    from model.line import read_lines, strip_to_line
    from training.strips import make_strip

    rng = np.random.default_rng(4)
    lines = []
    for length in (1, 4, 12, 25):
        index = rng.integers(0, len(mnist_test), length)
        lines.append(strip_to_line(make_strip(mnist_test.images[index], mnist_test.labels[index], rng).image).pixels)
    served = for_inference(line_reader_checkpoint.model, torch.device("cpu"))
    for plain, fast in zip(read_lines(line_reader_checkpoint.model, lines), read_lines(served, lines), strict=True):
        assert plain.labels == fast.labels and plain.spans == fast.spans
        assert fast.probabilities == pytest.approx(plain.probabilities, abs=1e-4)
        assert fast.contains_4 == pytest.approx(plain.contains_4, abs=1e-4)
