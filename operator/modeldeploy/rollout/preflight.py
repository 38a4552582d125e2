"""Planning with pre-flight checks: the planner proposes, a check disposes, the planner again.

The planner does no I/O, so it cannot ask the registry whether the version it would roll out
can be served. `plan_checked` closes that loop with the check passed in: plan; when the plan
rolls out a version the pods do not run yet (`Plan.new_version`), check it; when the check
fails, plan again knowing that (`Context.unservable`), which makes the planner keep what runs
or pick the next rollback target. Every round adds a version the planner will not propose
again, so the rounds are bounded by the versions it can propose: the selector's and those in
the (bounded) history.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from modeldeploy.api import reasons as r
from modeldeploy.registry.types import Unservable
from modeldeploy.rollout.planner import Context, InvalidSpec, Plan, plan

# The selector's version and every history entry, plus one: more means a planner bug.
MAX_ROUNDS = r.HISTORY_LIMIT + 2

# (version, fresh) → None when it may be rolled out. `fresh`: not from remembered answers.
Check = Callable[[str, bool], Unservable | None]


def plan_checked(ctx: Context | InvalidSpec, check: Check) -> Plan:
    """The plan whose new version, if any, passed `check` (or could not be checked: then the
    plan keeps what runs and says the registry did not answer). A rollback target is checked
    afresh: a version deleted a moment ago must not be one."""
    checked: set[str] = set()
    for _ in range(MAX_ROUNDS):
        p = plan(ctx)
        version = p.new_version
        if version is None:
            return p
        if version in checked:  # fail closed: never apply what failed its check
            raise RuntimeError(f"pre-flight: the planner proposed version {version} again")
        checked.add(version)
        failure = check(version, p.rollback is not None)
        if failure is None:
            return p
        assert isinstance(ctx, Context)  # an invalid spec proposes no version
        ctx = replace(ctx, unservable={**ctx.unservable, version: failure})
    raise RuntimeError(f"pre-flight: the planner proposed more than {MAX_ROUNDS} versions")
