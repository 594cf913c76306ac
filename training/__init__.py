"""The models and the registry: targets, training, evaluation, the bundle and MLflow."""
