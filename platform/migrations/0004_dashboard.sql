-- The dashboard and its API: operators, SSH key use, server-side sessions
-- and API tokens.

-- An operator sees every app and the Host page (`byteport users add NAME --operator`).
ALTER TABLE users ADD COLUMN operator BIGINT NOT NULL DEFAULT 0;

-- When a key last authenticated a git or admin command (Unix ms).
ALTER TABLE ssh_keys ADD COLUMN last_used_at BIGINT;

-- Dashboard sessions: the cookie holds a random token, the store only its
-- SHA-256 (a stolen database does not sign anyone in). Deleting the row
-- signs the browser out.
CREATE TABLE sessions (
    id_hash      TEXT PRIMARY KEY,
    user_name    TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    csrf         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    address      TEXT
);
CREATE INDEX sessions_by_user ON sessions(user_name);

-- API tokens for scripts (`byteport tokens create`): shown once, stored as
-- the SHA-256 of their secret part. `scope` is `api` (everything the user
-- may do) or `metrics` (only /metrics).
CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    user_name    TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    label        TEXT NOT NULL,
    scope        TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX api_tokens_by_user ON api_tokens(user_name);
