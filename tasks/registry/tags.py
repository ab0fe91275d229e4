"""Every MLflow tag key and alias name the pipeline writes or reads, in one place.

Tags are the registry's record of lineage and gate decisions; the CLI (`imgflow lineage`,
`imgflow rollback`) and later runs read them back, so a key is spelled only here.
"""

# Aliases of a registered model.
CHAMPION = "champion"  # the version that serves
CHALLENGER = "challenger"  # the newest version, before or after the gate

# Registered-model tag: JSON list of the champion's versions, oldest first (rollback reads it).
CHAMPION_HISTORY = "champion_history"

# Run tags: the parent run and every nested run of one pipeline call share PIPELINE_RUN.
PIPELINE_RUN = "imgflow.pipeline_run"
RUN_MODEL = "model"
RUN_DATASET = "dataset"
PARENT_RUN_ID = "mlflow.parentRunId"  # set by MLflow on nested runs

# Lineage tags on a version (DATA_VERSION and GIT_COMMIT are also parent-run tags).
DATA_VERSION = "data_version"
GIT_COMMIT = "git_commit"
PARAMS_HASH = "params_hash"
PARAMS = "params"
MODEL_MD5 = "model_md5"
VALIDATION = "validation"
CLASS_WEIGHTS = "class_weights"
VERSION_PIPELINE_RUN = "pipeline_run"

# The gate's decision on a version.
GATE_DECISION = "gate.decision"
GATE_METRIC = "gate.metric"
GATE_CHALLENGER_SCORE = "gate.challenger_score"
GATE_CHAMPION_VERSION = "gate.champion_version"
GATE_CHAMPION_SCORE = "gate.champion_score"
GATE_TOLERANCE = "gate.tolerance"
GATE_REASON = "gate.reason"
GATE_DECIDED_AT = "gate.decided_at"
GATE_JUDGE = "gate.judge"  # the CNN that scored a GAN at the gate

# A rollback's who/when/why, on the version made champion.
ROLLBACK_BY = "rollback.by"
ROLLBACK_AT = "rollback.at"
ROLLBACK_REASON = "rollback.reason"
ROLLBACK_FROM = "rollback.from"
ROLLBACK_FORCED = "rollback.forced"

NONE = "none"  # tag value for "no champion", "no score", "no class weights"
