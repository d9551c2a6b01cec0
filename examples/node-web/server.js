// A tiny Express app for BytePort: a page, a JSON API with a visit counter,
// and /healthz. PORT (default 8080) is the port to listen on.
'use strict';

const express = require('express');
const os = require('os');

const app = express();
const started = Date.now();
let visits = 0;

function info() {
  return {
    app: 'node-web',
    node: process.version,
    host: os.hostname(),
    uptimeSeconds: Math.round((Date.now() - started) / 100) / 10,
    visits,
    environment: process.env.NODE_ENV || 'development',
  };
}

app.get('/', (req, res) => {
  visits += 1;
  const i = info();
  res.type('html').send(`<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Express on a microVM</title>
  <style>
    body { margin: 0; min-height: 100vh; display: grid; place-items: center;
           background: #052e16; color: #dcfce7; font: 18px/1.6 system-ui, sans-serif; }
    main { max-width: 40rem; padding: 2rem; }
    h1 { font-size: 2.6rem; margin: 0 0 .5rem; color: #86efac; }
    .count { font-size: 4rem; font-weight: 700; color: #4ade80; }
    a { color: #86efac; }
  </style>
</head>
<body>
  <main>
    <h1>Express on a microVM</h1>
    <p>Node ${i.node}, dependencies installed by <code>npm ci</code> at build time.</p>
    <p class="count">${i.visits}</p>
    <p>visits since this VM booted ${i.uptimeSeconds} s ago · <a href="/api/info">/api/info</a></p>
  </main>
</body>
</html>`);
});

app.get('/api/info', (req, res) => res.json(info()));

app.get('/healthz', (req, res) => res.type('text').send('ok\n'));

const port = Number(process.env.PORT || 8080);
const server = app.listen(port, '0.0.0.0', () => {
  console.log(`node-web listening on :${port}`);
});

// Stop cleanly when BytePort drains the old VM.
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    console.log(`node-web: ${signal}, closing`);
    server.close(() => process.exit(0));
    server.closeIdleConnections();
    setTimeout(() => process.exit(0), 5000).unref();
  });
}
