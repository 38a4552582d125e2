"""Canary analysis input: what the serving pods' metrics say about two versions over one window.

`types` holds the measurement the pure judge (rollout/analysis.py) reads; `prometheus` asks a
Prometheus server for it. The planner sees measurements, never a client.
"""
