-- BytePort state store, initial schema.
-- Portable between SQLite and PostgreSQL: natural text keys, BIGINT unix
-- milliseconds for times, TEXT for encrypted values (base64).

CREATE TABLE users (
    name          TEXT PRIMARY KEY,
    password_hash TEXT,
    created_at    BIGINT NOT NULL
);

CREATE TABLE ssh_keys (
    fingerprint TEXT PRIMARY KEY,
    user_name   TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    algorithm   TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX ssh_keys_by_user ON ssh_keys(user_name);

CREATE TABLE apps (
    name       TEXT PRIMARY KEY,
    owner      TEXT NOT NULL REFERENCES users(name),
    created_at BIGINT NOT NULL
);

CREATE TABLE app_collaborators (
    app       TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    added_at  BIGINT NOT NULL,
    PRIMARY KEY (app, user_name)
);

CREATE TABLE deploys (
    app            TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    number         BIGINT NOT NULL,
    commit_id      TEXT NOT NULL,
    git_ref        TEXT NOT NULL,
    pushed_by      TEXT,
    status         TEXT NOT NULL,
    artifact       TEXT,
    failure_reason TEXT,
    timings_json   TEXT NOT NULL DEFAULT '{}',
    created_at     BIGINT NOT NULL,
    finished_at    BIGINT,
    PRIMARY KEY (app, number)
);

CREATE TABLE config_vars (
    app        TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (app, key)
);

CREATE TABLE secrets (
    app        TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    sealed     TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (app, name)
);

CREATE TABLE log_segments (
    app           TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    deploy_number BIGINT NOT NULL,
    stream        TEXT NOT NULL,
    path          TEXT NOT NULL,
    bytes         BIGINT NOT NULL DEFAULT 0,
    first_at      BIGINT NOT NULL,
    last_at       BIGINT NOT NULL,
    PRIMARY KEY (app, deploy_number, stream)
);

CREATE TABLE portfolio_entries (
    app             TEXT PRIMARY KEY REFERENCES apps(name) ON DELETE CASCADE,
    status          TEXT NOT NULL,
    title           TEXT NOT NULL,
    description     TEXT NOT NULL DEFAULT '',
    tags            TEXT NOT NULL DEFAULT '',
    screenshot_path TEXT,
    deploy_number   BIGINT,
    updated_at      BIGINT NOT NULL,
    published_at    BIGINT
);
