"""MLflow models-from-code entry point: the logged pyfunc is this file plus the apodistill
code, not a cloudpickle of the model object (no pickle to trust when loading)."""

import mlflow

from apodistill.serving.pyfunc import StudentModel

mlflow.models.set_model(StudentModel())
