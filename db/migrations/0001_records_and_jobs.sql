-- Pier's first schema: one table per control-plane record kind, and the job queue.
-- Portable SQL, the same on SQLite and PostgreSQL. `IF NOT EXISTS`, because data folders made
-- before migrations existed already hold these tables (their `attempts INTEGER` is the same
-- 64-bit integer to SQLite as `BIGINT`).
CREATE TABLE IF NOT EXISTS models (name TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS endpoint_configs (name TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS endpoints (name TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tags (name TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scalable_targets (name TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scaling_policies (name TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scaling_activities (name TEXT PRIMARY KEY, body TEXT NOT NULL);

CREATE TABLE IF NOT EXISTS jobs (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    owner TEXT,
    lease_expires_at DOUBLE PRECISION,
    heartbeat_at DOUBLE PRECISION,
    attempts BIGINT NOT NULL DEFAULT 0,
    created_at DOUBLE PRECISION NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, name));
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (kind, status, owner, created_at);

CREATE TABLE IF NOT EXISTS job_logs (
    kind TEXT NOT NULL,
    job TEXT NOT NULL,
    seq BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (kind, job, seq));

CREATE TABLE IF NOT EXISTS job_metrics (
    kind TEXT NOT NULL,
    job TEXT NOT NULL,
    name TEXT NOT NULL,
    step BIGINT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (kind, job, name, step));
