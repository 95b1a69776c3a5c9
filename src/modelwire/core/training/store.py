"""Where training jobs are kept: their records, with the state in a column of its own
(indexed, so jobs are counted by state without reading a record); the leases that say
which server runs each unfinished job; and the cancel requests made through a server
that does not run the job. SQLite or PostgreSQL (`core.database`), shared by every
server on the same database. Every method blocks: call them through `Datasets.run`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from modelwire.core.database import Database
from modelwire.core.training.job import FINISHED, Job, JobState

__all__ = ["JobStore", "Lease"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, created DOUBLE PRECISION, record TEXT);
CREATE TABLE IF NOT EXISTS job_leases (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, heartbeat DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS job_cancels (id TEXT PRIMARY KEY)
"""
_UNFINISHED = tuple(state.value for state in JobState if state not in FINISHED)
assert len(_UNFINISHED) == 2  # as many as unfinished() has placeholders


class Lease(NamedTuple):
    """Who runs a job, and when they last said so (on the store's clock)."""

    owner: str
    heartbeat: float


class JobStore:
    def __init__(self, database: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = database
        #: The wall clock leases are written and judged by (servers on several machines
        #: compare them); tests move it to age leases without waiting.
        self.clock = clock

    def create_schema(self) -> None:
        """The tables, and the state column of records an older version wrote (filled
        from their records, once)."""
        self._db.create_schema(_SCHEMA)
        self._db.ensure_column("jobs", "state", "TEXT")
        self._db.create_schema("CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state)")
        rows = self._db.execute("SELECT record FROM jobs WHERE state IS NULL").fetchall()
        for (record,) in rows:
            job = Job.from_json(record)
            self._db.execute("UPDATE jobs SET state = ? WHERE id = ?", (job.state.value, job.id))

    def close(self) -> None:
        self._db.close()

    # --- records --------------------------------------------------------------------

    def save(self, job: Job) -> None:
        self._db.execute(
            "INSERT INTO jobs (id, created, state, record) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET created = excluded.created, "
            "state = excluded.state, record = excluded.record",
            (job.id, job.created, job.state.value, job.to_json()),
        )

    def get(self, job_id: str) -> Job | None:
        row = self._db.execute("SELECT record FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else Job.from_json(row[0])

    def all(self) -> list[Job]:
        rows = self._db.execute("SELECT record FROM jobs").fetchall()
        return [Job.from_json(record) for (record,) in rows]

    def counts(self) -> dict[JobState, int]:
        """Jobs per state, every state named (0 for none). Rows an older version wrote
        since the schema was upgraded (servers upgraded one at a time) have no state
        column value: their records say."""
        counted = dict.fromkeys(JobState, 0)
        rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        for state, count in rows:
            if state is not None:
                counted[JobState(state)] += int(count)
        older = self._db.execute("SELECT record FROM jobs WHERE state IS NULL").fetchall()
        for (record,) in older:
            counted[Job.from_json(record).state] += 1
        return counted

    def unfinished(self) -> list[tuple[Job, Lease | None]]:
        """The unfinished jobs, oldest first, each with its lease (None: none), and the
        rows without a state column value (an older version's: read their records)."""
        rows = self._db.execute(
            "SELECT j.record, l.owner, l.heartbeat FROM jobs j "
            "LEFT JOIN job_leases l ON l.id = j.id "
            "WHERE j.state IN (?, ?) OR j.state IS NULL ORDER BY j.created",
            _UNFINISHED,
        ).fetchall()
        found = [
            (Job.from_json(record), None if owner is None else Lease(owner, heartbeat))
            for record, owner, heartbeat in rows
        ]
        return [(job, lease) for job, lease in found if not job.finished]

    # --- leases ---------------------------------------------------------------------

    def claim(self, job_id: str, owner: str, previous: Lease | None) -> bool:
        """Take the lease on a job for `owner`: a new one, or the one `previous` says
        (so of two servers adopting the same job, one wins)."""
        now = self.clock()
        if previous is None:
            cursor = self._db.execute(
                "INSERT INTO job_leases (id, owner, heartbeat) VALUES (?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (job_id, owner, now),
            )
        else:
            cursor = self._db.execute(
                "UPDATE job_leases SET owner = ?, heartbeat = ? "
                "WHERE id = ? AND owner = ? AND heartbeat = ?",
                (owner, now, job_id, previous.owner, previous.heartbeat),
            )
        return cursor.rowcount == 1

    def renew(self, owner: str) -> None:
        self._db.execute(
            "UPDATE job_leases SET heartbeat = ? WHERE owner = ?", (self.clock(), owner)
        )

    def release(self, job_id: str, owner: str) -> None:
        self._db.execute("DELETE FROM job_leases WHERE id = ? AND owner = ?", (job_id, owner))

    # --- cancel requests ------------------------------------------------------------

    def request_cancel(self, job_id: str) -> None:
        self._db.execute(
            "INSERT INTO job_cancels (id) VALUES (?) ON CONFLICT DO NOTHING", (job_id,)
        )

    def cancel_requests(self) -> list[str]:
        return [job_id for (job_id,) in self._db.execute("SELECT id FROM job_cancels").fetchall()]

    def drop_cancel_request(self, job_id: str) -> None:
        self._db.execute("DELETE FROM job_cancels WHERE id = ?", (job_id,))
