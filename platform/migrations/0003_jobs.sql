-- The job queue: every change to an app (push, restart, rollback, stop,
-- start, destroy, crash recovery, restore) is a row here first, then run by
-- that app's single worker. At most one job per app runs at a time, enforced
-- by the database itself (the partial unique index), so two `byteport up`
-- on one PostgreSQL can never run two jobs of one app, nor one job twice.
CREATE TABLE jobs (
    id               BIGINT PRIMARY KEY,
    app              TEXT NOT NULL,
    kind             TEXT NOT NULL,
    args_json        TEXT NOT NULL DEFAULT '{}',
    requested_by     TEXT,
    state            TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    run_after        BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    deadline_ms      BIGINT NOT NULL,
    node             TEXT,
    lease_owner      TEXT,
    lease_until      BIGINT,
    attempts         BIGINT NOT NULL DEFAULT 0,
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    failure_kind     TEXT,
    failure_message  TEXT,
    deploy_number    BIGINT,
    first_event      BIGINT,
    last_event       BIGINT
);
CREATE UNIQUE INDEX jobs_one_running_per_app ON jobs(app) WHERE state = 'running';
CREATE INDEX jobs_by_app ON jobs(app, id);
CREATE INDEX jobs_by_state ON jobs(state, run_after);

-- A deploy knows the job that made it (its build log is that job's events)
-- and what the pushed commit says about itself.
ALTER TABLE deploys ADD COLUMN job_id BIGINT;
ALTER TABLE deploys ADD COLUMN commit_author TEXT;
ALTER TABLE deploys ADD COLUMN commit_message TEXT;

-- App logs are event journals now (platform::events), found by directory.
DROP TABLE log_segments;
