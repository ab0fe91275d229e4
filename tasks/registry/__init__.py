"""The model registry side of the pipeline: MLflow runs, registered versions with lineage, the
promotion gate (and the GAN's judge), rollback and the run report. `tasks/register.py` is the DVC
stage that orchestrates these modules."""
