"""Rollback through the CLI: to the previous champion, to a named version, refusals."""

from __future__ import annotations

import pytest

from flows.cli import main as cli_main
from tasks.registry.champion import current_champion
from tasks.registry.rollback import PromotionError, rollback


def test_rollback_to_previous_and_named_versions_via_cli(
    store, exact_models, register_cnn, capsys
) -> None:
    root, client = store
    for correct, scale in ((10, 20.0), (6, 20.0), (10, 25.0)):
        exact_models.train_cnn(root, correct=correct, scale=scale)
        register_cnn(root)
    assert current_champion(client, "digits-cnn") == "3"  # v2 was rejected

    assert cli_main(["rollback", "digits-cnn", "--reason", "v3 misbehaves", "--user", "ops"]) == 0
    assert "champion v3 -> v1 by ops" in capsys.readouterr().out
    assert current_champion(client, "digits-cnn") == "1"
    tags = client.get_model_version("digits-cnn", "1").tags
    assert (tags["rollback.by"], tags["rollback.reason"], tags["rollback.from"]) == (
        "ops",
        "v3 misbehaves",
        "3",
    )
    assert tags["rollback.at"].endswith("Z")

    assert cli_main(["rollback", "digits-cnn", "--version", "2", "--reason", "try v2"]) == 1
    assert "rejected by the gate" in capsys.readouterr().err
    assert current_champion(client, "digits-cnn") == "1"
    assert cli_main(["rollback", "digits-cnn", "--version", "2", "--reason", "try", "--force"]) == 0
    assert current_champion(client, "digits-cnn") == "2"
    assert client.get_model_version("digits-cnn", "2").tags["rollback.forced"] == "true"
    assert cli_main(["rollback", "digits-cnn", "--version", "9", "--reason", "x"]) == 1
    assert "no version 9" in capsys.readouterr().err
    with pytest.raises(PromotionError, match="reason"):
        rollback(client, "digits-cnn", reason=" ")
