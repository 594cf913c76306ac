"""MLflow "models from code" entry point: MLflow runs this file to build the pyfunc.

Logged instead of a pickled object so that loading a registered version runs the
project's own code, never a cloudpickle of it. ``set_model`` at import is how MLflow's
models-from-code works; nothing else in the project imports this module.
"""

from mlflow.models import set_model

from training.pyfunc import JudicialAidModel

set_model(JudicialAidModel())
