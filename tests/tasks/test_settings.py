"""The settings object: defaults for the embedded setup, every variable read, bad values named."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.settings import DEFAULT_TRACKING_URI, Settings, SettingsError


def test_defaults_are_the_embedded_setup(tmp_path: Path) -> None:
    settings = Settings.from_environment(tmp_path, environment={"USER": "x"})
    assert settings.tracking_uri == DEFAULT_TRACKING_URI == "sqlite:///mlflow.db"
    assert settings.training_mode == "in-process"
    assert (settings.gpu_pool, settings.cpu_pool, settings.gpu_slots) == ("gpu", "cpu", 1)
    assert settings.training_timeout_seconds == 3600
    assert settings.landing_dir is None and settings.webhook_url is None
    assert settings.source == str(tmp_path.resolve())
    assert settings.prefect_port == 4200
    assert settings.lock_url is None and settings.lock_timeout_seconds == 600


def test_every_variable_is_read(tmp_path: Path) -> None:
    environment = {
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
        "IMGFLOW_USER": "reviewer",
        "IMGFLOW_RETRAIN_CRON": "0 3 * * 1",
        "IMGFLOW_LANDING_DIR": str(tmp_path / "landing"),
        "IMGFLOW_WEBHOOK_URL": "http://127.0.0.1:9/hook",
        "IMGFLOW_TRAINING_MODE": "worker",
        "IMGFLOW_GPU_POOL": "a100",
        "IMGFLOW_CPU_POOL": "small",
        "IMGFLOW_GPU_SLOTS": "4",
        "IMGFLOW_TRAINING_TIMEOUT": "60",
        "IMGFLOW_SOURCE": "https://git.example/imgflow.git",
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "IMGFLOW_PREFECT_PORT": "4300",
        "IMGFLOW_LOCK_URL": "postgresql://imgflow@db:5432/locks",
        "IMGFLOW_LOCK_TIMEOUT": "30",
    }
    settings = Settings.from_environment(tmp_path, environment=environment)
    assert settings == Settings(
        tracking_uri="http://mlflow:5000",
        user="reviewer",
        retrain_cron="0 3 * * 1",
        landing_dir=tmp_path / "landing",
        webhook_url="http://127.0.0.1:9/hook",
        training_mode="worker",
        gpu_pool="a100",
        cpu_pool="small",
        gpu_slots=4,
        training_timeout_seconds=60,
        source="https://git.example/imgflow.git",
        prefect_home=tmp_path / "prefect",
        prefect_port=4300,
        lock_url="postgresql://imgflow@db:5432/locks",
        lock_timeout_seconds=30,
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("IMGFLOW_TRAINING_MODE", "cluster", "must be one of in-process, worker"),
        ("IMGFLOW_TRAINING_TIMEOUT", "1h", "_TIMEOUT must be a whole number, got '1h'"),
        ("IMGFLOW_GPU_SLOTS", "0", "IMGFLOW_GPU_SLOTS must be positive, got 0"),
    ],
)
def test_a_bad_value_names_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_environment(Path("."), environment={name: value})


def test_client_credentials_for_shared_servers_are_read_and_kept_out_of_repr() -> None:
    environment = {
        "MLFLOW_TRACKING_USERNAME": "alice",
        "MLFLOW_TRACKING_PASSWORD": "mlflow-secret",
        "PREFECT_API_URL": "http://prefect:4200/api",
        "PREFECT_API_AUTH_STRING": "admin:prefect-secret",
    }
    settings = Settings.from_environment(Path("."), environment=environment)
    assert (settings.mlflow_username, settings.mlflow_password) == ("alice", "mlflow-secret")
    assert settings.prefect_api_url == "http://prefect:4200/api"
    assert settings.prefect_api_auth_string == "admin:prefect-secret"
    assert "secret" not in repr(settings)
    empty = Settings.from_environment(Path("."), environment={})
    assert (empty.mlflow_username, empty.mlflow_password) == (None, None)
    assert (empty.prefect_api_url, empty.prefect_api_auth_string) == (None, None)


def test_team_server_settings_are_read_and_secrets_kept_out_of_repr(tmp_path: Path) -> None:
    defaults = Settings.from_environment(tmp_path, environment={})
    assert defaults.s3_endpoint is None and defaults.s3_bucket == "imgflow"
    assert (defaults.s3_port, defaults.mlflow_port, defaults.team_host) == (8333, 5000, "127.0.0.1")
    assert defaults.postgres_url == "postgresql://postgres@127.0.0.1:5432/postgres"
    assert (defaults.mlflow_db, defaults.mlflow_auth_db, defaults.prefect_db) == (
        "imgflow_mlflow",
        "imgflow_mlflow_auth",
        "imgflow_prefect",
    )
    assert defaults.team_state_dir == Path(".imgflow-team")
    assert defaults.mlflow_admin_password is None and defaults.prefect_auth_string is None
    environment = {
        "IMGFLOW_S3_ENDPOINT": "https://s3.eu-west-1.amazonaws.com",
        "IMGFLOW_S3_BUCKET": "team-bucket",
        "IMGFLOW_S3_PORT": "9000",
        "AWS_ACCESS_KEY_ID": "key-id",
        "AWS_SECRET_ACCESS_KEY": "aws-secret",
        "IMGFLOW_POSTGRES_URL": "postgresql://u:pg-secret@db:5432/postgres",
        "IMGFLOW_MLFLOW_DB": "m",
        "IMGFLOW_MLFLOW_AUTH_DB": "a",
        "IMGFLOW_PREFECT_DB": "p",
        "IMGFLOW_TEAM_HOST": "0.0.0.0",
        "IMGFLOW_MLFLOW_PORT": "5001",
        "IMGFLOW_TEAM_STATE": str(tmp_path / "state"),
        "IMGFLOW_MLFLOW_ADMIN_PASSWORD": "admin-secret-long",
        "IMGFLOW_PREFECT_AUTH_STRING": "team:prefect-secret",
    }
    settings = Settings.from_environment(tmp_path, environment=environment)
    assert (settings.s3_endpoint, settings.s3_bucket, settings.s3_port) == (
        "https://s3.eu-west-1.amazonaws.com",
        "team-bucket",
        9000,
    )
    assert (settings.s3_access_key, settings.s3_secret_key) == ("key-id", "aws-secret")
    assert settings.postgres_url == "postgresql://u:pg-secret@db:5432/postgres"
    assert (settings.mlflow_db, settings.mlflow_auth_db, settings.prefect_db) == ("m", "a", "p")
    assert (settings.team_host, settings.mlflow_port) == ("0.0.0.0", 5001)
    assert settings.team_state_dir == tmp_path / "state"
    assert settings.mlflow_admin_password == "admin-secret-long"
    assert settings.prefect_auth_string == "team:prefect-secret"
    assert "secret" not in repr(settings)
    with pytest.raises(SettingsError, match="IMGFLOW_MLFLOW_PORT must be a whole number"):
        Settings.from_environment(tmp_path, environment={"IMGFLOW_MLFLOW_PORT": "http"})
