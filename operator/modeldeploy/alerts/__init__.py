"""Alert intake: Alertmanager webhook notifications and polled alert APIs, reduced to the firing
alerts of each ModelDeployment."""
