// The example authorization server: oidc-provider on http://127.0.0.1:$PORT, asking
// clientgate (at $CLIENTGATE_ADDR, tenant $CLIENTGATE_TENANT) about every client.
//
//   CLIENTGATE_ADDR=127.0.0.1:50051 PORT=3000 node src/server.js

import http from 'node:http';

import { Clientgate } from './clientgate.js';
import { createProvider } from './provider.js';

function log(entry) {
  console.log(JSON.stringify({ time: new Date().toISOString(), ...entry }));
}

const address = process.env.CLIENTGATE_ADDR ?? '127.0.0.1:50051';
const tenant = process.env.CLIENTGATE_TENANT ?? 'default';
const port = Number(process.env.PORT ?? 3000);

const server = http.createServer();
server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = createProvider({ issuer, clientgate: new Clientgate(address, tenant), log });
  server.on('request', provider.callback());
  log({ event: 'listening', issuer, clientgate: address, tenant });
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
