// The example authorization server: oidc-provider on http://127.0.0.1:$PORT, asking
// clientgate (at $CLIENTGATE_ADDR, tenant $CLIENTGATE_TENANT) about every client, with the
// token in $CLIENTGATE_TOKEN_FILE (or $CLIENTGATE_TOKEN) and, when $CLIENTGATE_CA_FILE names
// the CA of clientgate's certificate, over TLS.
//
//   CLIENTGATE_ADDR=127.0.0.1:50051 CLIENTGATE_TOKEN_FILE=as.token PORT=3000 node src/server.js

import { readFileSync } from 'node:fs';
import http from 'node:http';

import { Clientgate } from './clientgate.js';
import { createProvider } from './provider.js';

function log(entry) {
  console.log(JSON.stringify({ time: new Date().toISOString(), ...entry }));
}

const address = process.env.CLIENTGATE_ADDR ?? '127.0.0.1:50051';
const tenant = process.env.CLIENTGATE_TENANT ?? 'default';
const tokenFile = process.env.CLIENTGATE_TOKEN_FILE;
const token = tokenFile ? readFileSync(tokenFile, 'utf8').trim() : process.env.CLIENTGATE_TOKEN;
const caFile = process.env.CLIENTGATE_CA_FILE || undefined;
const port = Number(process.env.PORT ?? 3000);

const server = http.createServer();
server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = createProvider({ issuer, clientgate: new Clientgate({ address, tenant, token, caFile }), log });
  server.on('request', provider.callback());
  log({ event: 'listening', issuer, clientgate: address, tenant, tls: Boolean(caFile), token: Boolean(token) });
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
