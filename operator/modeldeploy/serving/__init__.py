"""The instrumented model server that runs in serving pods (`modeldeploy serve`).

It speaks MLflow's scoring protocol and exports Prometheus metrics, input drift and feedback
quality. It must not import kopf or kubernetes: the serving image does not ship them.
"""
