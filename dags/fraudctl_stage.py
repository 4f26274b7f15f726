"""A fraudctl stage as an Airflow task: the command that runs the binary and the operator that
turns its exit code into the task's state. Not a DAG file (.airflowignore).

The binary is the deployment's, never a Variable: FRAUDCTL_BIN of the worker's environment
(Dockerfile.airflow, scripts/stack.sh), else `fraudctl` on its PATH.
"""

import os

from fraudctl_compat import AirflowException, AirflowSkipException, BashOperator, SkipMixin, skip_downstream
from fraudctl_exit_codes import SKIPPED_EXIT_CODE, permanent_failure

DEFAULT_BIN = "fraudctl"  # on PATH, when the worker's environment has no FRAUDCTL_BIN


def fraudctl_bin() -> str:
    """The fraudctl binary of this worker (call it at run time, in the task)."""
    return os.environ.get("FRAUDCTL_BIN") or DEFAULT_BIN


def fraudctl(subcommand: str) -> str:
    """The bash_command of a fraudctl stage: no value inline, everything comes from env."""
    return (
        'for v in "${!FRAUDCTL_@}"; do [ -n "${!v}" ] || unset "$v"; done; '
        f'exec "${{FRAUDCTL_BIN:-{DEFAULT_BIN}}}" {subcommand}'
    )


class FraudctlStageOperator(BashOperator, SkipMixin):
    """A BashOperator running one fraudctl stage. When the stage is skipped (exit 99: a past
    interval with no raw data), on Airflow 2.8.3 it marks every downstream task skipped itself,
    like ShortCircuitOperator, instead of leaving that to trigger-rule propagation: 2.8's backfill
    counts tasks skipped by propagation as "not ready" and, with nothing else running
    (max_active_runs=1), stops with "BackfillJob is deadlocked" (Airflow 3's scheduler-run
    backfills do not: fraudctl_compat.skip_downstream). Exit 4 and 5 fail the task at once
    ([permanent_failure]); other failures are retried. The exception carries the exit code
    (`exit_code`, None after a timeout) for the failure email (fraudctl_notify.notify_failure)."""

    def __init__(self, **kwargs):
        super().__init__(skip_on_exit_code=SKIPPED_EXIT_CODE, **kwargs)

    def execute(self, context):
        try:
            return super().execute(context)
        except AirflowSkipException:
            downstream = self.get_flat_relatives(upstream=False)
            if downstream:
                skip_downstream(self, context, downstream)
            raise
        except AirflowException as e:
            process = self.subprocess_hook.sub_process
            e.exit_code = process.returncode if process else None
            failure = permanent_failure(e.exit_code)
            if failure is None:
                raise
            failure.exit_code = e.exit_code
            raise failure from e
