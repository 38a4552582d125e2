"""MLflow registry resolution: one small client interface, a shared cache, typed errors."""
