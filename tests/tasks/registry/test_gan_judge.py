"""The GAN's gate judge: both generators are scored by the champion CNN, not a weak new one."""

from __future__ import annotations

import pytest

from tasks.paths import RUN_REPORT_MARKDOWN
from tasks.register import register_models


def test_gan_is_judged_by_the_champion_cnn_not_a_weak_new_one(
    store, exact_models, fake_repo
) -> None:
    """A weak new CNN must not decide the GAN's fate: both generators are scored by the champion
    CNN, so an unchanged-quality GAN stays promotable while the weak CNN is rejected. The GAN
    draws real test images (not one drawing per class, which the diversity headline refuses)."""
    root, client = store
    exact_models.train_cnn(root, correct=10)
    first = exact_models.train_gan(root, copy_test=True)
    assert first["recognisable_share"] == pytest.approx(1.0)
    diversity = first["diversity_score"]  # both exact CNNs embed images alike (pixels)
    cnn, gan = register_models(root, fake_repo.stage_params(root), models=["cnn", "gan"])
    assert (cnn.decision, gan.decision) == ("promoted", "promoted")
    # This run's CNN went through its gate first and is now the champion: it judges.
    assert gan.judge == "digits-cnn v1 (champion, this run's CNN)"

    exact_models.train_cnn(
        root, correct=1
    )  # 10 %: fails the CNN threshold, and misreads 9 of 10 classes
    run_judged = exact_models.train_gan(
        root, copy_test=True, sharpness=999.0
    )  # a new generator file, same drawings
    assert run_judged["recognisable_share"] == pytest.approx(0.1)
    cnn, gan = register_models(root, fake_repo.stage_params(root), models=["cnn", "gan"])
    assert (cnn.version, cnn.decision) == ("2", "rejected")
    assert (gan.version, gan.decision, gan.champion_version) == ("2", "promoted", "1")
    assert gan.judge == "digits-cnn v1 (champion)"
    assert gan.headline_value == pytest.approx(diversity)
    assert gan.champion_score == pytest.approx(diversity)
    tags = client.get_model_version("digits-gan", "2").tags
    assert tags["gate.judge"] == "digits-cnn v1 (champion)"
    assert float(tags["gate.challenger_score"]) == pytest.approx(diversity)
    # The evaluate step's own score (by the run's CNN) stays on record next to the gate's.
    logged = client.get_run(gan.run_id).data.metrics
    assert logged["recognisable_share"] == pytest.approx(0.1)
    assert logged["gate_recognisable_share"] == pytest.approx(1.0)
    report = (root / RUN_REPORT_MARKDOWN).read_text()
    assert "judged by digits-cnn v1 (champion)" in report
    floor = next(line for line in report.splitlines() if line.startswith("| frechet_floor |"))
    assert floor.endswith("| reference |")  # the data's floor is neither better nor worse
