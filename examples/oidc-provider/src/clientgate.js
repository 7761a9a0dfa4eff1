// A small promise-based client for clientgate's gRPC API, loaded from the project's proto:
// TLS and a bearer token when configured.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const PROTO = fileURLToPath(new URL('../../../proto/clientgate/v1/clientgate.proto', import.meta.url));

const definition = protoLoader.loadSync(PROTO, {
  includeDirs: [path.dirname(PROTO)],
  keepCase: true,
  enums: String,
  longs: Number,
  defaults: true,
  oneofs: true,
});
const api = grpc.loadPackageDefinition(definition).clientgate.v1;

/** How long the AS waits for clientgate before failing closed: above clientgate's default
 * CIMD slot wait and fetch timeout (0.5 s + 5 s), so a first lookup of a slow document still gets its answer. */
const DEADLINE_MS = 6000;

/**
 * clientgate at `address`, for `tenant`: over TLS when `caFile` names the CA that issued its
 * certificate, with `token` as `authorization: Bearer …` on every call when given.
 */
export class Clientgate {
  constructor({ address, tenant = 'default', token, caFile }) {
    const credentials = caFile
      ? grpc.credentials.createSsl(readFileSync(caFile))
      : grpc.credentials.createInsecure();
    this.tenant = tenant;
    this.metadata = new grpc.Metadata();
    if (token) this.metadata.set('authorization', `Bearer ${token}`);
    this.services = {
      registration: new api.RegistrationService(address, credentials),
      stepUps: new api.StepUpService(address, credentials),
      admin: new api.AdminService(address, credentials),
    };
  }

  /** Calls `method` of `service` (`registration`, `stepUps`, `admin`) with a deadline. */
  call(service, method, request) {
    return new Promise((resolve, reject) => {
      const deadline = new Date(Date.now() + DEADLINE_MS);
      this.services[service][method](request, this.metadata.clone(), { deadline }, (error, response) => {
        if (error) reject(error);
        else resolve(response);
      });
    });
  }

  /** Decides a DCR request body (a JSON string) from the caller `ip`; with `ticketId`, the
   * step-up ticket an earlier decision of this registration opened. */
  evaluateDcr(body, { ip, userAgent, ticketId }) {
    return this.call('registration', 'Evaluate', {
      tenant: this.tenant,
      dcr: { metadata_json: body },
      caller: { ip: ip ?? '', user_agent: userAgent ?? '' },
      step_up: ticketId ? { ticket_id: ticketId } : undefined,
    });
  }

  /** Decides a CIMD client_id, with the authorization request's redirect_uri if any. */
  evaluateCimd(clientId, { redirectUri, ip, userAgent, ticketId }) {
    return this.call('registration', 'Evaluate', {
      tenant: this.tenant,
      cimd: { client_id: clientId, redirect_uri: redirectUri ?? '' },
      caller: { ip: ip ?? '', user_agent: userAgent ?? '' },
      step_up: ticketId ? { ticket_id: ticketId } : undefined,
    });
  }
}
