-- Custom domains are claimed: the first app to deploy with a domain keeps
-- it until a deploy of that app goes live without it, or the app is
-- destroyed. Another app's push that names it is rejected.
CREATE TABLE domains (
    domain     TEXT PRIMARY KEY,
    app        TEXT NOT NULL,
    claimed_at BIGINT NOT NULL
);
CREATE INDEX domains_by_app ON domains(app);
