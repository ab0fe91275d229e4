"""`imgflow lineage`: the description of a registered version read back from the registry."""

from __future__ import annotations

from flows.cli import main as cli_main


def test_lineage_cli_prints_run_data_version_validation_and_commit(
    store, exact_models, register_cnn, capsys
) -> None:
    root, _ = store
    exact_models.train_cnn(root, correct=10)
    entry = register_cnn(root)
    capsys.readouterr()
    assert cli_main(["lineage", "digits-cnn", "@champion"]) == 0
    out = capsys.readouterr().out
    assert f"{'digits-cnn'} version 1 (aliases: challenger, champion)" in out
    assert f"MLflow run: {entry.run_id}" in out
    assert "epochs = 3" in out and "test_accuracy = 1" in out
    assert "val_loss: 3 epochs" in out
    assert "Data version (data.dvc md5): 0123456789abcdef0123456789abcdef.dir" in out
    assert "dvc checkout data.dvc" in out
    assert "class_kl: ok, observed 0.01" in out  # the validation report of that data
    assert "Git commit: unknown" in out
    assert "Gate: promoted" in out
    assert cli_main(["lineage", "digits-cnn", "7"]) == 1
    assert "no version or alias '7'" in capsys.readouterr().err
