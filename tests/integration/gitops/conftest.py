"""The operator fixtures of tests/integration/operator (CRD, registry, start_operator, kube),
shared with the GitOps tests."""

from tests.integration.operator.conftest import (  # noqa: F401 (fixtures)
    crd,
    kube,
    pytest_runtest_makereport,
    registry,
    start_operator,
)
