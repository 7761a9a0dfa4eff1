// End to end: the release clientgate with the starter policies, TLS and tokens, a loopback
// HTTPS host serving CIMD documents, and the example authorization server (holding only
// the `evaluate` role), driven by the MCP TypeScript SDK's `auth()` with a scripted browser.
// The tests themselves call clientgate as an operator.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';

import grpc from '@grpc/grpc-js';

import { auth } from '@modelcontextprotocol/sdk/client/auth.js';

import { Clientgate } from '../src/clientgate.js';
import { MemoryClient, REDIRECT_URI, browse, startAuthorizationServer, startStack, stopAll } from './harness.js';

const CLAUDE_CODE = 'https://claude.ai/oauth/claude-code-client-metadata';

let stack;
let operator;

before(async () => {
  stack = await startStack();
  operator = new Clientgate({ address: stack.clientgateAddress, token: stack.operatorToken, caFile: stack.caFile });
});

after(() => stopAll());

function metadata(overrides = {}) {
  return {
    client_name: 'E2E Client',
    redirect_uris: [REDIRECT_URI],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
    scope: 'openid',
    ...overrides,
  };
}

/** Runs the SDK's flow to the end; returns the SDK client and what the browser saw. */
async function signIn(client) {
  const serverUrl = `${stack.issuer}/mcp`;
  assert.equal(await auth(client, { serverUrl }), 'REDIRECT');
  const browsed = await browse(client.authorizationUrl, client.redirectUrl);
  if (!browsed.code) return { browsed };
  assert.equal(await auth(client, { serverUrl, authorizationCode: browsed.code }), 'AUTHORIZED');
  return { browsed };
}

test('a CIMD client (Claude Code\'s real document) gets tokens, and the decision is listed', async () => {
  const client = new MemoryClient({ clientMetadata: metadata({ client_name: 'Claude Code' }), clientMetadataUrl: CLAUDE_CODE });
  const { browsed } = await signIn(client);
  assert.ok(browsed.code, `no authorization code: ${browsed.html}`);
  assert.equal(client.saved.client.client_id, CLAUDE_CODE, 'the SDK registered by CIMD');
  assert.ok(client.saved.tokens.access_token, 'tokens issued');
  assert.ok(browsed.consent, 'require_consent (loopback-only native client) showed the consent screen');

  const listed = await operator.call('admin', 'ListDecisions', { client_id: CLAUDE_CODE });
  assert.ok(listed.decisions.length >= 1, 'ListDecisions lists the CIMD decision');
  assert.equal(listed.decisions[0].decision, 'DECISION_APPROVE');
  assert.ok(stack.asLog.some((line) => line.includes(listed.decisions.at(-1).decision_id)), 'the AS logged the decision id');
});

test('a DCR client with https redirects on its own domain is approved with the consent screen and gets tokens', async () => {
  const client = new MemoryClient({
    clientMetadata: metadata({ client_name: 'Web App', client_uri: 'https://app.example.com', redirect_uris: ['https://app.example.com/callback'] }),
  });
  const { browsed } = await signIn(client);
  assert.ok(browsed.code, `no authorization code: ${browsed.html}`);
  assert.ok(client.saved.tokens.access_token);
  assert.ok(browsed.consent, 'require_consent (a DCR client nobody vouches for) showed the consent screen');
  const registered = await operator.call('admin', 'ListDecisions', { decision: 'DECISION_APPROVE' });
  assert.ok(registered.decisions.some((record) => record.client_name === 'Web App'));
});

test('a DCR client with a fragment in its redirect URI is denied with clientgate\'s error', async () => {
  const client = new MemoryClient({
    clientMetadata: metadata({ client_name: 'Fragment', redirect_uris: ['https://app.example.com/callback#frag'] }),
  });
  await assert.rejects(
    auth(client, { serverUrl: `${stack.issuer}/mcp` }),
    (error) => {
      assert.match(error.message, /fragment/u, 'the SDK shows clientgate\'s error description');
      return true;
    },
  );
  assert.equal(client.saved.client, undefined, 'no client was registered');

  // The SDK maps codes it does not know to server_error; the wire has the exact one.
  const response = await fetch(`${stack.issuer}/reg`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(metadata({ client_name: 'Fragment', redirect_uris: ['https://app.example.com/callback#frag'] })),
  });
  assert.equal(response.status, 400);
  const body = await response.json();
  assert.equal(body.error, 'invalid_redirect_uri');
  assert.match(body.error_description, /fragment/u);
});

async function resolve(ticketId, approve) {
  const resolved = await operator.call('stepUps', 'ResolveStepUp', { ticket_id: ticketId, approve, note: approve ? '' : 'not ours' });
  assert.equal(resolved.resolver, 'e2e-operator', 'the resolver recorded is who the token says called');
  return resolved;
}

function pendingTicket(name) {
  const line = stack.asLog.map((entry) => { try { return JSON.parse(entry); } catch { return {}; } })
    .find((entry) => entry.event === 'registration decided' && entry.decision === 'DECISION_STEP_UP' && entry.client_name === name);
  assert.ok(line, `the AS logged the step-up of ${name}`);
  return line.ticket_id;
}

test('a DCR client that is stepped up waits for approval, then completes the same flow', async () => {
  const client = new MemoryClient({
    clientMetadata: metadata({ client_name: 'Borrowed Name', client_uri: 'https://famous.example', redirect_uris: ['https://elsewhere.example.net/cb'] }),
  });
  const serverUrl = `${stack.issuer}/mcp`;
  assert.equal(await auth(client, { serverUrl }), 'REDIRECT');
  assert.ok(client.saved.client.client_id, 'the client is registered while pending');
  const waiting = await browse(client.authorizationUrl, client.redirectUrl);
  assert.equal(waiting.status, 403);
  assert.match(waiting.html, /id="waiting"/u);
  // No way around the hold: the authorization endpoint does not take POST.
  const posted = await fetch(new URL('/auth', stack.issuer), {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: client.authorizationUrl.searchParams.toString(),
  });
  assert.equal(posted.status, 404);

  await resolve(pendingTicket('Borrowed Name'), true);
  const approved = await browse(client.authorizationUrl, client.redirectUrl);
  assert.ok(approved.code, `no code after approval: ${approved.html}`);
  const held = stack.asLog.map((entry) => { try { return JSON.parse(entry); } catch { return {}; } })
    .filter((entry) => entry.event === 'held client decided' && entry.client_id === client.saved.client.client_id);
  assert.deepEqual(held.map((entry) => entry.decision), ['DECISION_STEP_UP', 'DECISION_APPROVE'],
    'the hold asked clientgate with the ticket (evaluate role only): pending, then approved once');
  assert.equal(await auth(client, { serverUrl, authorizationCode: approved.code }), 'AUTHORIZED');
  assert.ok(client.saved.tokens.access_token);
});

test('a DCR client whose ticket is denied stays blocked', async () => {
  const client = new MemoryClient({
    clientMetadata: metadata({ client_name: 'Denied Name', client_uri: 'https://famous.example', redirect_uris: ['https://elsewhere.example.net/denied'] }),
  });
  assert.equal(await auth(client, { serverUrl: `${stack.issuer}/mcp` }), 'REDIRECT');
  await resolve(pendingTicket('Denied Name'), false);
  for (let attempt = 0; attempt < 2; attempt += 1) {
    const refused = await browse(client.authorizationUrl, client.redirectUrl);
    assert.equal(refused.status, 403);
    assert.match(refused.html, /id="refused"/u);
    assert.equal(refused.code, undefined);
  }
});

test('a CIMD document that claims another client_id is refused, and the AS never fetched it', async () => {
  const impostor = 'https://app.example.com/mcp/impostor.json';
  const client = new MemoryClient({ clientMetadata: metadata({ client_name: 'Claude Code' }), clientMetadataUrl: impostor });
  const { browsed } = await signIn(client);
  assert.equal(browsed.code, undefined);
  assert.match(browsed.html, /clientgate refused this client/u);
  const listed = await operator.call('admin', 'ListDecisions', { client_id: impostor });
  assert.equal(listed.decisions[0].decision, 'DECISION_DENY');
  assert.ok(listed.decisions[0].findings.some((finding) => finding.code === 'client_id_mismatch'), JSON.stringify(listed.decisions[0].findings));
  assert.ok(!stack.asLog.some((line) => line.includes('oidc-provider fetch refused')), 'oidc-provider never tried to fetch a document');
});

test('a CIMD client from an unapproved domain waits for approval, then gets tokens', async () => {
  const tool = 'https://app.example.com/mcp/tool.json';
  const client = new MemoryClient({
    clientMetadata: metadata({ client_name: 'Example Tool', redirect_uris: ['https://app.example.com/mcp/callback'] }),
    clientMetadataUrl: tool,
  });
  const serverUrl = `${stack.issuer}/mcp`;
  assert.equal(await auth(client, { serverUrl }), 'REDIRECT');
  const waiting = await browse(client.authorizationUrl, client.redirectUrl);
  assert.equal(waiting.code, undefined);
  const ticketId = /waiting for an administrator&#39;s approval \(ticket (\w+)\)/u.exec(waiting.html)?.[1];
  assert.ok(ticketId, `the page names the ticket: ${waiting.html}`);
  assert.match(waiting.html, /the client_id is not on an approved domain/u, 'with clientgate\'s reason');

  await resolve(ticketId, true);
  const approved = await browse(client.authorizationUrl, client.redirectUrl);
  assert.ok(approved.code, `no code after approval: ${approved.html}`);
  assert.equal(await auth(client, { serverUrl, authorizationCode: approved.code }), 'AUTHORIZED');
  assert.ok(client.saved.tokens.access_token);
});

test('clientgate lets in only the AS\'s token, over TLS, and that token cannot approve', async () => {
  const body = JSON.stringify(metadata({ client_name: 'Probe', redirect_uris: ['https://app.example.com/callback'] }));
  const request = { dcr: { metadata_json: body }, dry_run: true };
  const tokenless = new Clientgate({ address: stack.clientgateAddress, caFile: stack.caFile });
  await assert.rejects(tokenless.call('registration', 'Evaluate', request), (error) => error.code === grpc.status.UNAUTHENTICATED);

  const as = new Clientgate({ address: stack.clientgateAddress, token: readFileSync(stack.asTokenFile, 'utf8').trim(), caFile: stack.caFile });
  assert.equal((await as.call('registration', 'Evaluate', request)).decision, 'DECISION_APPROVE');
  const ticketId = pendingTicket('Borrowed Name');
  await assert.rejects(
    as.call('stepUps', 'ResolveStepUp', { ticket_id: ticketId, approve: true }),
    (error) => error.code === grpc.status.PERMISSION_DENIED && /lacks the `operator` role/u.test(error.details),
  );
  await assert.rejects(as.call('admin', 'ListDecisions', {}), (error) => error.code === grpc.status.PERMISSION_DENIED);

  const plaintext = new Clientgate({ address: stack.clientgateAddress, token: stack.operatorToken });
  await assert.rejects(plaintext.call('admin', 'ListDecisions', {}), (error) => error.code === grpc.status.UNAVAILABLE, 'a plaintext caller gets no answer');
});

test('an AS without its token fails closed: clientgate refuses it and nothing is registered', async () => {
  const tokenless = await startAuthorizationServer(stack.clientgateAddress, { caFile: stack.caFile });
  const response = await fetch(`${tokenless.issuer}/reg`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(metadata({ client_name: 'Anyone', redirect_uris: ['https://app.example.com/callback'] })),
  });
  assert.equal(response.status, 503);
  assert.ok(tokenless.log.some((line) => line.includes('clientgate unreachable') && line.includes('UNAUTHENTICATED')), tokenless.log.join('\n'));
});

test('with clientgate unreachable, the AS fails closed: no registration, no CIMD client', async () => {
  // Port 1 on loopback: nothing listens, the connection is refused at once.
  const lonely = await startAuthorizationServer('127.0.0.1:1');
  const response = await fetch(`${lonely.issuer}/reg`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(metadata({ client_name: 'Anyone', redirect_uris: ['https://app.example.com/callback'] })),
  });
  assert.equal(response.status, 503);
  assert.equal((await response.json()).error, 'temporarily_unavailable');

  const client = new MemoryClient({ clientMetadata: metadata({ client_name: 'Claude Code' }), clientMetadataUrl: CLAUDE_CODE });
  assert.equal(await auth(client, { serverUrl: `${lonely.issuer}/mcp` }), 'REDIRECT');
  const refused = await browse(client.authorizationUrl, client.redirectUrl);
  assert.equal(refused.code, undefined);
  assert.match(refused.html, /unreachable/u);
  assert.ok(lonely.log.some((line) => line.includes('clientgate unreachable')));
});
