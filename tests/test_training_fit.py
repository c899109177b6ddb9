"""What training and fine-tuning share: the optimizer's learning-rate schedules."""


import pytest


def test_learning_rate_schedules():
    from dnnkit.config.model import TrainConfig
    from dnnkit.training.fit import make_optimizer

    step = make_optimizer(TrainConfig(schedule="step", step_epochs=2, step_gamma=0.5,
                                      learning_rate=0.1), steps_per_epoch=10)
    lr = step.learning_rate  # the schedule's value at the optimizer's current iteration
    sched = step._learning_rate
    assert float(sched(0)) == pytest.approx(0.1) and float(sched(19)) == pytest.approx(0.1)
    assert float(sched(20)) == pytest.approx(0.05) and float(sched(45)) == pytest.approx(0.025)
    assert float(lr) == pytest.approx(0.1)
    cosine = make_optimizer(TrainConfig(schedule="cosine", epochs=5, learning_rate=0.1),
                            steps_per_epoch=10)._learning_rate
    assert float(cosine(0)) == pytest.approx(0.1) and float(cosine(50)) == pytest.approx(0.0, abs=1e-7)
    assert float(cosine(25)) == pytest.approx(0.05, rel=1e-3)
