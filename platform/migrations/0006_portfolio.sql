-- Portfolio versions replace the placeholder entries: every draft and
-- edit is a version kept forever, the version itself as JSON, its review
-- state in its own column so transitions are compare-and-set.
DROP TABLE portfolio_entries;
CREATE TABLE portfolio_versions (
    app         TEXT NOT NULL,
    number      BIGINT NOT NULL,
    state       TEXT NOT NULL,
    reviewed_by TEXT,
    reviewed_at BIGINT,
    created_at  BIGINT NOT NULL,
    body        TEXT NOT NULL,
    PRIMARY KEY (app, number)
);

-- Small settings documents (the portfolio profile and publish target).
CREATE TABLE settings (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
