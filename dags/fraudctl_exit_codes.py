"""fraudctl's exit codes as the DAGs read them: what each means (the failure email says it), which
no retry can change (the task fails at once) and which is a skip. Not a DAG file (.airflowignore).

src/error.rs's exit::CODES is the one list: its tests hold EXIT_CODES, PERMANENT_EXIT_CODES and
SKIPPED_EXIT_CODE here to it (reading this file by path), as they hold docs/commands.md's table.
"""

from fraudctl_compat import AirflowFailException

# The ones no retry can change fail the task at once; any other failure (3, a signal, a timeout)
# is retried.
EXIT_CODES = {
    0: "success",
    1: "unexpected error (the log's message chain says what failed)",
    2: "bad command-line usage",
    3: "a service unavailable after retries (payments API, PostgreSQL, SMTP server, SageMaker)",
    4: "unusable input (a stage file, feature spec or model)",
    5: "configuration (a missing or invalid setting, or a service refusing the request)",
    99: "skipped: nothing to do (a past interval with no captured raw data)",
}
PERMANENT_EXIT_CODES = {code: EXIT_CODES[code] for code in (4, 5)}
SKIPPED_EXIT_CODE = 99


def exit_code_meaning(code: int | None) -> str:
    if code is None:
        return (
            "none: the task failed outside a fraudctl command (a Variable's check, a timeout, "
            "a signal, another program); the log says which"
        )
    return f"{code}: " + EXIT_CODES.get(code, "not one of fraudctl's exit codes")


def permanent_failure(exit_code: int | None) -> AirflowFailException | None:
    """The failure to raise, without retries, for a fraudctl exit code; None when retrying may help."""
    meaning = PERMANENT_EXIT_CODES.get(exit_code)
    if meaning is None:
        return None
    return AirflowFailException(
        f"fraudctl exited {exit_code}: {meaning}. Retrying cannot help: fix what the log above "
        "names, then clear the task."
    )
