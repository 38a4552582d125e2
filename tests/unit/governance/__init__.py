"""Unit tests of approvals, promotion and lineage: the in-memory fakes, no network."""
