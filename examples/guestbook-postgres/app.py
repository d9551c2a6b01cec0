"""A guestbook: GET / lists the entries, POST /sign (form field `text`)
adds one. Everything is kept in the database named by DATABASE_URL."""
import html
import os
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2


def connect():
    return psycopg2.connect(os.environ["DATABASE_URL"])


class Guestbook(BaseHTTPRequestHandler):
    def reply(self, status, body, content_type="text/html; charset=utf-8", extra=()):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health":
            with connect() as db, db.cursor() as cur:
                cur.execute("SELECT 1")
            return self.reply(200, "ok\n", "text/plain")
        if self.path != "/":
            return self.reply(404, "not found\n", "text/plain")
        with connect() as db, db.cursor() as cur:
            cur.execute("SELECT text FROM entries ORDER BY id")
            rows = cur.fetchall()
        items = "".join(f"<li>{html.escape(text)}</li>" for (text,) in rows)
        self.reply(
            200,
            "<!doctype html><title>Guestbook</title><h1>Guestbook</h1>"
            f"<ul>{items}</ul>"
            '<form method="post" action="/sign"><input name="text" maxlength="500">'
            "<button>Sign</button></form>",
        )

    def do_POST(self):
        if self.path != "/sign":
            return self.reply(404, "not found\n", "text/plain")
        length = min(int(self.headers.get("Content-Length", "0") or 0), 4096)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
        text = form.get("text", [""])[0].strip()
        if not 1 <= len(text) <= 500:
            return self.reply(400, "an entry is 1 to 500 characters\n", "text/plain")
        with connect() as db, db.cursor() as cur:
            cur.execute("INSERT INTO entries (text) VALUES (%s)", (text,))
        self.reply(303, "", extra=[("Location", "/")])


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", 8080), Guestbook).serve_forever()
