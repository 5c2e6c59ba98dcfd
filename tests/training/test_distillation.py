"""The distillation loss a classifier learns from a teacher with (``--teacher``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from training.classifier import distillation_loss


def test_without_weight_it_is_the_labels_cross_entropy_and_a_matching_student_owes_the_teacher_nothing():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(32, 10, generator=generator)
    targets = torch.randint(0, 10, (32,), generator=generator)
    teacher = torch.randn(32, 10, generator=generator)
    torch.testing.assert_close(distillation_loss(logits, teacher, targets, weight=0.0),
                               F.cross_entropy(logits, targets, reduction="sum"))
    assert float(distillation_loss(logits, logits, targets, weight=1.0)) < 1e-4
    assert float(distillation_loss(logits, teacher, targets, weight=1.0)) > 1.0


def test_a_student_follows_its_teacher_where_the_labels_disagree():
    """A linear student trained on labels that are right only half the time, with a teacher that
    is always right, ends up reading as the teacher does; on the labels alone it cannot."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(2000, 20, generator=generator)
    truth = torch.nn.Linear(20, 10)
    with torch.no_grad():
        teacher_logits = 3 * truth(inputs)
    right = teacher_logits.argmax(1)
    noisy = torch.where(torch.rand(2000, generator=generator) < 0.5, torch.randint(0, 10, (2000,), generator=generator), right)

    def agreement(weight: float) -> float:
        torch.manual_seed(1)
        student = torch.nn.Linear(20, 10)
        optimizer = torch.optim.Adam(student.parameters(), lr=0.05)
        for _ in range(200):
            optimizer.zero_grad()
            (distillation_loss(student(inputs), teacher_logits, noisy, weight) / len(inputs)).backward()
            optimizer.step()
        with torch.no_grad():
            return float(student(inputs).argmax(1).eq(right).float().mean())

    followed, labels_alone = agreement(0.9), agreement(0.0)
    assert followed > 0.95
    assert followed > labels_alone + 0.1
