"""Approvals, promotion, lineage and the audit trail, kept on MLflow's own records."""
