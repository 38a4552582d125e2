"""The kopf wiring: watch events feed a work queue; workers observe → plan → apply → status."""
