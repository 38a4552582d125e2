"""Integration tests of the governance commands: the real MLflow server and API server."""
