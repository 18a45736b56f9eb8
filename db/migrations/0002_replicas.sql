-- Serving replicas' heartbeats: each `pier serve` upserts its row every few seconds; rows
-- older than a few beats are replicas that are gone. `at` is the database's clock (seconds
-- since the epoch), so replicas on hosts with skewed clocks still agree on who is live.
CREATE TABLE replicas (
    id TEXT PRIMARY KEY,
    started_at DOUBLE PRECISION NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    addresses TEXT NOT NULL,
    serving TEXT NOT NULL);
