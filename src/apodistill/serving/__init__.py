"""Using a trained student: MLflow pyfunc packaging, registry, predict and serve."""
