"""The attack suite (issue 13): every case an automated test against real parts — a real
`modeldeploy serve` process, the operator run as users run it, the real API server, helm.

The fixtures are the serving and operator suites' own, imported rather than copied, so an
attack runs against exactly what those suites test. docs/security.md lists each attack, what
is expected, and the test here that shows it.
"""

from __future__ import annotations

from tests.integration.chart.conftest import tools  # noqa: F401  (fixture)
from tests.integration.operator.conftest import (  # noqa: F401  (fixtures)
    crd,
    kube,
    pytest_runtest_makereport,
    registry,
    start_operator,
)
from tests.integration.serving.conftest import models, serve  # noqa: F401  (fixtures)
