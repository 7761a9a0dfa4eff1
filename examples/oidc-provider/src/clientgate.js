// A small promise-based client for clientgate's gRPC API, loaded from the project's proto.

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
 * CIMD fetch timeout (5 s), so a first lookup of a slow document still gets its answer. */
const DEADLINE_MS = 6000;

export function call(client, method, request) {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + DEADLINE_MS);
    client[method](request, { deadline }, (error, response) => {
      if (error) reject(error);
      else resolve(response);
    });
  });
}

export class Clientgate {
  constructor(address, tenant) {
    const credentials = grpc.credentials.createInsecure();
    this.tenant = tenant;
    this.registration = new api.RegistrationService(address, credentials);
    this.stepUps = new api.StepUpService(address, credentials);
    this.admin = new api.AdminService(address, credentials);
  }

  /** Decides a DCR request body (a JSON string) from the caller `ip`. */
  evaluateDcr(body, { ip, userAgent }) {
    return call(this.registration, 'Evaluate', {
      tenant: this.tenant,
      dcr: { metadata_json: body },
      caller: { ip: ip ?? '', user_agent: userAgent ?? '' },
    });
  }

  /** Decides a CIMD client_id, with the authorization request's redirect_uri if any. */
  evaluateCimd(clientId, { redirectUri, ip, userAgent, ticketId }) {
    return call(this.registration, 'Evaluate', {
      tenant: this.tenant,
      cimd: { client_id: clientId, redirect_uri: redirectUri ?? '' },
      caller: { ip: ip ?? '', user_agent: userAgent ?? '' },
      step_up: ticketId ? { ticket_id: ticketId } : undefined,
    });
  }

  /** The step-up ticket `ticketId`, with its state. */
  getStepUp(ticketId) {
    return call(this.stepUps, 'GetStepUp', { ticket_id: ticketId });
  }
}
