"""Did a round move the job forward? The coordinator's bound on failure, as pure functions.

A round made progress when the next round resumes from a newer checkpoint than it started from: whatever
happened in between (steps, saves, a crash right after a commit), the job is further on. Otherwise it ended
where it began, and whether that counts as a failure depends on why it ended:

- a failure counts: an agent failed on some box for a reason of its own (a save error, a collective or save
  timeout, a crash), a member was lost, or a graceful stop did not finish in time;
- an ending on request does not: a join, a drain or a re-plan stopped it (before its first step, or after
  steps whose checkpoint did not come). An elastic storm of joins and drains never fails a job;
- a network failure does not either: it backs off instead (2 ... 60 s), so a user can fix a firewall.

`MAX_FRUITLESS_ROUNDS` failed rounds in a row without progress fail the job, with a message that says what
happened on which box in each of them. A round with progress ends the streak, whatever ended it.
"""

from __future__ import annotations

from p2pft.jobs.model import RoundInfo

# Failed rounds in a row that did not move the job's resume point: then the job fails. Five: a crash, a lost box
# or a flaky save heals in one or two; five in a row on the same checkpoint is a fault that needs a person, and
# with save_steps of 500 the job has already spent five times that many steps on it.
MAX_FRUITLESS_ROUNDS = 5
MAX_WHY_CHARS = 400   # per distinct reason in the final message: one worker error's first lines fit


def started_from(info: RoundInfo) -> int | None:
    """The step the round's workers resumed from: one before its first step, else the coordinator's pick."""
    return info.first_step - 1 if info.first_step is not None else info.resume_step


def made_progress(info: RoundInfo, next_resume: int | None) -> bool:
    """Does the next round resume from a newer checkpoint than `info` started from?"""
    start = started_from(info)
    return next_resume is not None and (start is None or next_resume > start)


def next_streak(streak: tuple[str, ...], ended: RoundInfo | None, next_resume: int | None,
                failure: str) -> tuple[str, ...]:
    """The failed rounds in a row without progress, after `ended` (the round a new one replaces) ended.

    `failure`: what ended it when a failure did, naming the box ("" when it ended on request or for a network
    fault). Each entry is `round N: <what happened>`. `ended` None: no running round ended (the job waited for
    boxes, or was paused): nothing to judge."""
    if ended is None:
        return streak
    if made_progress(ended, next_resume):
        return ()
    return (*streak, f"round {ended.round}: {failure}") if failure else streak


def give_up(streak: tuple[str, ...], resume: int | None) -> str | None:
    """The job's final message once the streak is long enough, else None."""
    if len(streak) < MAX_FRUITLESS_ROUNDS:
        return None
    where = f"step {resume}" if resume is not None else "the start (no checkpoint yet)"
    return (f"{len(streak)} rounds in a row made no new checkpoint; the job stays at {where}: "
            f"{'; '.join(_grouped(streak))}")


def _grouped(streak: tuple[str, ...]) -> list[str]:
    """`round 3: X`, `round 4: X`, `round 5: Y` -> `rounds 3, 4: X`, `round 5: Y` (the same fault once)."""
    groups: dict[str, list[str]] = {}
    for entry in streak:
        label, _, why = entry.partition(": ")
        groups.setdefault(why, []).append(label.removeprefix("round "))
    parts = []
    for why, rounds in groups.items():
        text = why if len(why) <= MAX_WHY_CHARS else why[:MAX_WHY_CHARS - 3] + "..."
        parts.append(f"{'rounds' if len(rounds) > 1 else 'round'} {', '.join(rounds)}: {text}")
    return parts
