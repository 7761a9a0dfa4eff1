// Starts what the end-to-end tests need, all on 127.0.0.1: the CIMD document server (test
// CA, clientgate's development `[cimd]` keys, and clientgate's TLS certificate from the same
// CA), the release clientgate with the starter policies, TLS and two tokens made by
// `clientgate token new` (the AS's, `evaluate` only; the tests' operator's), and the example
// authorization server. Drives a "browser" through the sign-in.

import { execFileSync, spawn } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const EXAMPLE = fileURLToPath(new URL('../', import.meta.url));
const RELEASE = path.join(ROOT, 'target', 'release');

/** The loopback redirect URI of native test clients; nothing listens there, the browser
 * stops at it. */
export const REDIRECT_URI = 'http://127.0.0.1/callback';

const children = [];

export function stopAll() {
  for (const child of children.splice(0)) child.kill('SIGTERM');
}

/** Spawns `command`, collects its output, and resolves with the first line `ready` accepts. */
function start(name, command, args, { env, ready, stream = 'stdout' }) {
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  const output = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start:\n${output.join('\n')}`)), 60_000);
    for (const which of ['stdout', 'stderr']) {
      createInterface({ input: child[which] }).on('line', (line) => {
        output.push(line);
        if (which !== stream) return;
        const found = ready(line);
        if (found !== undefined) {
          clearTimeout(timer);
          resolve({ child, found, output });
        }
      });
    }
    child.on('exit', (code) => reject(new Error(`${name} exited (${code}):\n${output.join('\n')}`)));
  });
}

/** Makes a token with `roles` by `clientgate token new`, its table appended to `config`;
 * returns the file that holds it. */
function makeToken(work, config, name, roles) {
  const file = path.join(work, `${name}.token`);
  const table = execFileSync(path.join(RELEASE, 'clientgate'), [
    'token', 'new', '--name', name, ...roles.flatMap((role) => ['--role', role]), '--out', file,
  ], { encoding: 'utf8' });
  appendFileSync(config, `\n${table}`);
  return file;
}

/** Starts one more authorization server, talking to clientgate at `address` with the
 * token in `tokenFile`, over TLS trusting `caFile` when given. */
export async function startAuthorizationServer(address, { tokenFile, caFile } = {}) {
  const as = await start('authorization server', process.execPath, [path.join(EXAMPLE, 'src', 'server.js')], {
    env: { CLIENTGATE_ADDR: address, CLIENTGATE_TOKEN_FILE: tokenFile ?? '', CLIENTGATE_CA_FILE: caFile ?? '', PORT: '0' },
    ready: (line) => {
      try {
        const entry = JSON.parse(line);
        return entry.event === 'listening' ? entry.issuer : undefined;
      } catch {
        return undefined;
      }
    },
  });
  return { issuer: as.found, log: as.output };
}

/** Everything up: returns the AS issuer, clientgate's address and the processes' logs. */
export async function startStack() {
  const work = mkdtempSync(path.join(tmpdir(), 'clientgate-e2e-'));
  const docs = await start('cimd_doc_server', path.join(RELEASE, 'examples', 'cimd_doc_server'), [
    '--tls',
    path.join(EXAMPLE, 'test', 'documents'),
    work,
  ], { ready: (line) => (line.startsWith('serving ') ? line : undefined) });
  const config = path.join(work, 'clientgate.toml');
  const asToken = makeToken(work, config, 'as-example', ['evaluate']);
  const operatorToken = makeToken(work, config, 'e2e-operator', ['operator']);
  const caFile = path.join(work, 'test-ca.pem');

  const gate = await start('clientgate', path.join(RELEASE, 'clientgate'), [
    'serve',
    '--listen', '127.0.0.1:0',
    '--policies', path.join(ROOT, 'policies'),
    '--data', path.join(work, 'data'),
    '--config', config,
  ], {
    env: { RUST_LOG: 'info' },
    stream: 'stderr',
    ready: (line) => (line.includes('clientgate listening') ? /addr=(\S+)/u.exec(line)[1] : undefined),
  });

  const as = await startAuthorizationServer(gate.found, { tokenFile: asToken, caFile });
  return {
    issuer: as.issuer,
    clientgateAddress: gate.found,
    asTokenFile: asToken,
    operatorToken: readFileSync(operatorToken, 'utf8').trim(),
    caFile,
    asLog: as.log,
    clientgateLog: gate.output,
    docsLog: docs.output,
    config: readFileSync(config, 'utf8'),
  };
}

/** An MCP SDK `OAuthClientProvider` that keeps everything in memory. */
export class MemoryClient {
  constructor({ clientMetadata, clientMetadataUrl }) {
    this.clientMetadata = clientMetadata;
    this.clientMetadataUrl = clientMetadataUrl;
    this.redirectUrl = clientMetadata.redirect_uris[0];
    this.saved = {};
    this.authorizationUrl = undefined;
  }

  clientInformation() {
    return this.saved.client;
  }

  saveClientInformation(client) {
    this.saved.client = client;
  }

  tokens() {
    return this.saved.tokens;
  }

  saveTokens(tokens) {
    this.saved.tokens = tokens;
  }

  redirectToAuthorization(url) {
    this.authorizationUrl = url;
  }

  saveCodeVerifier(verifier) {
    this.saved.verifier = verifier;
  }

  codeVerifier() {
    return this.saved.verifier;
  }
}

/**
 * Follows an authorization URL like a browser: keeps cookies, signs in, allows on the
 * consent screen. Resolves with the authorization code, or with the page it stopped on.
 */
export async function browse(url, redirectUri) {
  const cookies = new Map();
  const seen = { consent: false, pages: [] };
  let next = { url: String(url), method: 'GET', body: undefined };
  for (let hop = 0; hop < 20; hop += 1) {
    const response = await fetch(next.url, {
      method: next.method,
      redirect: 'manual',
      headers: {
        cookie: [...cookies].map(([name, value]) => `${name}=${value}`).join('; '),
        ...(next.body ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
      },
      body: next.body,
    });
    for (const header of response.headers.getSetCookie()) {
      const [pair] = header.split(';');
      const at = pair.indexOf('=');
      cookies.set(pair.slice(0, at), pair.slice(at + 1));
    }
    const location = response.headers.get('location');
    if (response.status >= 300 && response.status < 400 && location) {
      const target = new URL(location, next.url);
      if (target.href.startsWith(redirectUri)) {
        return { ...seen, code: target.searchParams.get('code'), error: target.searchParams.get('error'), error_description: target.searchParams.get('error_description') };
      }
      next = { url: target.href, method: 'GET', body: undefined };
      continue;
    }
    const html = await response.text();
    seen.pages.push(html);
    const action = (id) => new RegExp(`<form[^>]*${id ? `id="${id}"[^>]*` : ''}action="([^"]+)"`, 'u').exec(html)?.[1];
    if (html.includes('<form id="login"')) {
      next = { url: new URL(action('login'), next.url).href, method: 'POST', body: 'login=demo-user' };
      continue;
    }
    if (html.includes('id="consent"')) {
      seen.consent = true;
      const confirm = /action="([^"]+\/confirm)"/u.exec(html)[1];
      next = { url: new URL(confirm, next.url).href, method: 'POST', body: '' };
      continue;
    }
    return { ...seen, status: response.status, html };
  }
  throw new Error('too many redirects');
}
