"""modeldeploy: a Kubernetes operator for ML model deployments from the MLflow Model Registry."""

__version__ = "0.1.0"
