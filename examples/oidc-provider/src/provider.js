// oidc-provider configured to ask clientgate about every client:
//
// - DCR: `decideRegistrations` runs in front of `POST /reg`.
// - CIMD: the Client adapter resolves URL client_ids through clientgate, so only
//   clientgate's SSRF-guarded fetcher touches the network (oidc-provider's own fetch is
//   switched off by `allowFetch`).
// - Step-up: `holdPendingClients` keeps authorization requests of a client registered on a
//   STEP_UP waiting: each one evaluates the registration again with its ticket, so the AS
//   needs only clientgate's `evaluate` role; the first APPROVE releases the client.
// - Obligations: `require_consent` makes the consent screen appear (interactions.js).

import Provider, { errors } from 'oidc-provider';

import { interactions } from './interactions.js';
import { page } from './pages.js';

/** Client metadata clientgate's answer adds; never taken from a client's own request. */
export const CLIENTGATE_PROPERTIES = ['clientgate_decision_id', 'clientgate_ticket', 'clientgate_obligations'];

/** How long an approved CIMD client is reused before clientgate is asked again. */
const CIMD_REUSE_MS = 60_000;

export function createProvider({ issuer, clientgate, log }) {
  const cimd = new CimdClients(clientgate, log);
  const clients = new ClientAdapter(cimd);
  const held = new Map();
  const provider = new Provider(issuer, {
    adapter: (name) => (name === 'Client' ? clients : new MemoryAdapter()),
    clients: [],
    cookies: { keys: ['clientgate-example-not-secret'] },
    extraClientMetadata: { properties: CLIENTGATE_PROPERTIES },
    features: {
      devInteractions: { enabled: false },
      registration: { enabled: true },
      clientIdMetadataDocument: {
        enabled: true,
        ack: 'draft-02',
        // Every URL client_id is resolved by clientgate in the Client adapter; this is the
        // safety net that keeps oidc-provider from ever fetching one itself.
        async allowFetch(ctx, clientId) {
          log({ event: 'oidc-provider fetch refused', client_id: clientId });
          return false;
        },
      },
    },
    findAccount: (ctx, accountId) => ({
      accountId,
      async claims() {
        return { sub: accountId };
      },
    }),
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    pkce: { required: () => true },
    responseTypes: ['code'],
    async renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = page('Sign-in failed', `<p><b>${escape(out.error)}</b></p><p id="description">${escape(out.error_description ?? '')}</p>`);
    },
  });
  provider.proxy = false;
  provider.use(decideRegistrations(clientgate, held, log));
  provider.use(holdPendingClients(clientgate, clients, held, log));
  provider.use(interactions(provider));
  return provider;
}

/**
 * `POST /reg`: clientgate decides; a DENY is the RFC 7591 error, anything else registers.
 * A client registered on a STEP_UP is `held` with the request clientgate decided, which its
 * authorization requests present again with the ticket.
 */
function decideRegistrations(clientgate, held, log) {
  return async (ctx, next) => {
    if (ctx.method !== 'POST' || ctx.path !== '/reg') return next();
    const body = await readBody(ctx.req);
    const caller = { ip: ctx.ip, userAgent: ctx.get('user-agent') };
    let answer;
    try {
      answer = await clientgate.evaluateDcr(body, caller);
    } catch (error) {
      // Fail closed: no decision, no client.
      log({ event: 'clientgate unreachable', error: error.message });
      ctx.status = 503;
      ctx.body = { error: 'temporarily_unavailable', error_description: 'the registration policy service is unreachable; try again later' };
      return undefined;
    }
    log({
      event: 'registration decided',
      decision_id: answer.decision_id,
      decision: answer.decision,
      client_name: JSON.parse(answer.client_metadata_json).client_name,
      reasons: answer.reasons.map((reason) => reason.policy_id),
      ticket_id: answer.step_up?.ticket_id,
      duplicate_of: answer.duplicate_of || undefined,
    });
    if (answer.decision === 'DECISION_DENY') {
      ctx.status = 400;
      ctx.body = { error: answer.error.error, error_description: answer.error.error_description };
      return undefined;
    }
    const metadata = JSON.parse(answer.client_metadata_json);
    for (const property of CLIENTGATE_PROPERTIES) delete metadata[property];
    metadata.clientgate_decision_id = answer.decision_id;
    metadata.clientgate_obligations = answer.obligations;
    if (answer.decision === 'DECISION_STEP_UP') {
      metadata.clientgate_ticket = answer.step_up.ticket_id;
    }
    // oidc-provider reads an already-read body from here.
    ctx.request.body = metadata;
    await next();
    if (answer.decision === 'DECISION_STEP_UP' && ctx.status === 201) {
      held.set(ctx.body.client_id, { body, caller, ticketId: answer.step_up.ticket_id });
    }
    return undefined;
  };
}

/**
 * Authorization requests of a client registered on a STEP_UP wait for its ticket: each
 * evaluates the registration again with the ticket (STEP_UP while it is pending, DENY once
 * denied or expired, APPROVE once approved), which needs only the `evaluate` role. The
 * first APPROVE releases the client for good, with that decision's metadata marks.
 * oidc-provider serves the authorization endpoint on GET only (`enableHttpPostMethods` is
 * off, and the tests check that POST is not served); turn POST on and this hold must read
 * the form too.
 */
function holdPendingClients(clientgate, clients, held, log) {
  const refuse = (ctx, status, title, html) => {
    ctx.status = status;
    ctx.type = 'html';
    ctx.body = page(title, html);
  };
  return async (ctx, next) => {
    if (ctx.path !== '/auth' || typeof ctx.query.client_id !== 'string') return next();
    const clientId = ctx.query.client_id;
    const registered = await clients.store.find(clientId);
    const ticketId = registered?.clientgate_ticket;
    if (!ticketId) return next();
    const registration = held.get(clientId);
    if (!registration) {
      // Registered as pending by an earlier run of this AS: nothing to present again.
      refuse(ctx, 403, 'Not approved', `<p id="refused">This application's registration (ticket <code>${escape(ticketId)}</code>) is no longer known here; register it again.</p>`);
      return undefined;
    }
    let answer;
    try {
      answer = await clientgate.evaluateDcr(registration.body, { ...registration.caller, ticketId });
    } catch (error) {
      log({ event: 'clientgate unreachable', error: error.message });
      refuse(ctx, 503, 'Try again later', '<p>The registration policy service is unreachable; try again later.</p>');
      return undefined;
    }
    log({ event: 'held client decided', client_id: clientId, ticket_id: ticketId, decision_id: answer.decision_id, decision: answer.decision });
    if (answer.decision === 'DECISION_APPROVE') {
      held.delete(clientId);
      const { clientgate_ticket: _released, ...metadata } = registered;
      metadata.clientgate_decision_id = answer.decision_id;
      metadata.clientgate_obligations = answer.obligations;
      await clients.store.upsert(clientId, metadata);
      return next();
    }
    if (answer.decision === 'DECISION_STEP_UP') {
      refuse(ctx, 403, 'Waiting for approval', `<p id="waiting">This application is waiting for an administrator's approval (ticket <code>${escape(ticketId)}</code>). Try again once it is approved.</p>`);
    } else {
      refuse(ctx, 403, 'Not approved', `<p id="refused">An administrator did not approve this application (ticket <code>${escape(ticketId)}</code>): ${escape(answer.error.error_description)}</p>`);
    }
    return undefined;
  };
}

/** URL client_ids, resolved by clientgate and reused for a minute once approved (for good
 * once an operator's approval let them in). */
class CimdClients {
  constructor(clientgate, log) {
    this.clientgate = clientgate;
    this.log = log;
    this.approved = new Map();
    this.tickets = new Map();
  }

  async find(clientId) {
    const reused = this.approved.get(clientId);
    if (reused && reused.until > Date.now()) return reused.metadata;
    const ctx = Provider.ctx;
    let answer;
    try {
      answer = await this.clientgate.evaluateCimd(clientId, {
        redirectUri: ctx?.oidc?.params?.redirect_uri ?? ctx?.query?.redirect_uri,
        ip: ctx?.ip,
        userAgent: ctx?.get('user-agent'),
        ticketId: this.tickets.get(clientId),
      });
    } catch (error) {
      this.log({ event: 'clientgate unreachable', error: error.message });
      throw new errors.InvalidClient('the registration policy service is unreachable; try again later');
    }
    this.log({
      event: 'cimd client decided',
      client_id: clientId,
      decision_id: answer.decision_id,
      decision: answer.decision,
      reasons: answer.reasons.map((reason) => reason.policy_id),
    });
    if (answer.decision === 'DECISION_DENY') {
      throw new errors.InvalidClient(`clientgate refused this client: ${answer.error.error_description}`);
    }
    if (answer.decision === 'DECISION_STEP_UP') {
      this.tickets.set(clientId, answer.step_up.ticket_id);
      const why = answer.reasons.map((reason) => reason.message).join('; ');
      throw new errors.InvalidClient(`waiting for an administrator's approval (ticket ${answer.step_up.ticket_id}): ${why}`);
    }
    const metadata = JSON.parse(answer.client_metadata_json);
    for (const property of CLIENTGATE_PROPERTIES) delete metadata[property];
    metadata.client_id = clientId;
    metadata.clientgate_decision_id = answer.decision_id;
    metadata.clientgate_obligations = answer.obligations;
    // An operator's approval is redeemed once: the client it let in stays registered here
    // (as a DCR client does), rather than asking again with a spent ticket.
    const redeemed = this.tickets.delete(clientId);
    this.approved.set(clientId, { metadata, until: redeemed ? Infinity : Date.now() + CIMD_REUSE_MS });
    return metadata;
  }
}

/** Registered clients in memory; URL client_ids through clientgate. */
class ClientAdapter {
  constructor(cimd) {
    this.cimd = cimd;
    this.store = new MemoryAdapter();
  }

  async upsert(id, payload, expiresIn) {
    return this.store.upsert(id, payload, expiresIn);
  }

  async find(id) {
    const registered = await this.store.find(id);
    if (registered) return registered;
    if (/^https:\/\//u.test(id)) return this.cimd.find(id);
    return undefined;
  }

  async destroy(id) {
    return this.store.destroy(id);
  }
}

/** oidc-provider's storage contract, in a Map (a real AS keeps these in a database). */
class MemoryAdapter {
  constructor() {
    this.entries = new Map();
  }

  async upsert(id, payload, expiresIn) {
    const expiresAt = expiresIn ? Date.now() + expiresIn * 1000 : undefined;
    this.entries.set(id, { payload, expiresAt });
  }

  async find(id) {
    const entry = this.entries.get(id);
    if (!entry) return undefined;
    if (entry.expiresAt && entry.expiresAt < Date.now()) {
      this.entries.delete(id);
      return undefined;
    }
    return entry.payload;
  }

  async findByUserCode(userCode) {
    for (const { payload } of this.entries.values()) if (payload.userCode === userCode) return payload;
    return undefined;
  }

  async findByUid(uid) {
    for (const { payload } of this.entries.values()) if (payload.uid === uid) return payload;
    return undefined;
  }

  async consume(id) {
    const entry = this.entries.get(id);
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    this.entries.delete(id);
  }

  async revokeByGrantId(grantId) {
    for (const [id, { payload }] of this.entries) if (payload.grantId === grantId) this.entries.delete(id);
  }
}

async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new errors.InvalidRequest('request body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export function escape(text) {
  return String(text).replace(/[&<>"']/gu, (c) => `&#${c.charCodeAt(0)};`);
}
