"""The guestbook's schema; safe to run on every deploy (the release phase)."""
import os

import psycopg2

with psycopg2.connect(os.environ["DATABASE_URL"]) as db, db.cursor() as cur:
    cur.execute(
        """CREATE TABLE IF NOT EXISTS entries (
               id serial PRIMARY KEY,
               text text NOT NULL CHECK (length(text) BETWEEN 1 AND 500),
               created timestamptz NOT NULL DEFAULT now()
           )"""
    )
    cur.execute("SELECT count(*) FROM entries")
    print(f"schema ready: {cur.fetchone()[0]} entries")
