-- An app its owner stopped stays stopped across restarts of `byteport up`
-- ('running' or 'stopped').
ALTER TABLE apps ADD COLUMN desired_state TEXT NOT NULL DEFAULT 'running';

-- A rollback is a new deploy that re-boots an earlier deploy's artifact;
-- this names the deploy it went back to.
ALTER TABLE deploys ADD COLUMN rollback_of BIGINT;
