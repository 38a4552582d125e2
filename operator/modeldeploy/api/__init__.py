"""The ModelDeployment API in Python: spec and status types, condition helpers, reasons."""
