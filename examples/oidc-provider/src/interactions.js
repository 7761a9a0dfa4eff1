// The sign-in and consent screens. Sign-in accepts any name (this is an example); consent
// is shown only when clientgate attached the `require_consent` obligation, and granted
// silently otherwise.

import { page } from './pages.js';

const ROUTE = /^\/interaction\/([\w-]+)(?:\/(login|confirm|abort))?$/u;

export function interactions(provider) {
  return async (ctx, next) => {
    const match = ROUTE.exec(ctx.path);
    if (!match) return next();
    const [, uid, action] = match;
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    if (details.uid !== uid) ctx.throw(400, 'interaction mismatch');
    const { prompt, params } = details;

    if (!action && ctx.method === 'GET') {
      if (prompt.name === 'login') {
        ctx.type = 'html';
        ctx.body = page('Sign in', `<form id="login" method="post" action="/interaction/${uid}/login">
  <label>Name <input name="login" value="demo-user"></label>
  <button type="submit">Sign in</button>
</form>`);
        return undefined;
      }
      const client = await provider.Client.find(params.client_id);
      if ((client?.clientgate_obligations ?? []).includes('require_consent')) {
        ctx.type = 'html';
        ctx.body = page('Allow access?', `<p id="consent"><b>${client.clientName ?? params.client_id}</b> wants to access your account.</p>
<form method="post" action="/interaction/${uid}/confirm"><button type="submit">Allow</button></form>
<form method="post" action="/interaction/${uid}/abort"><button type="submit">Deny</button></form>`);
        return undefined;
      }
      return finish(ctx, provider, { consent: { grantId: await grant(provider, details) } });
    }
    if (ctx.method !== 'POST') ctx.throw(405);
    if (action === 'login') {
      const form = new URLSearchParams(await readForm(ctx.req));
      return finish(ctx, provider, { login: { accountId: form.get('login') || 'demo-user' } });
    }
    if (action === 'confirm') {
      return finish(ctx, provider, { consent: { grantId: await grant(provider, details) } });
    }
    return finish(ctx, provider, { error: 'access_denied', error_description: 'the user denied access' });
  };
}

async function finish(ctx, provider, result) {
  const redirectTo = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: true });
  ctx.status = 303;
  ctx.redirect(redirectTo);
}

/** Grants what the authorization request asked for. */
async function grant(provider, { grantId, params, session, prompt: { details } }) {
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (details.missingOIDCScope) grant.addOIDCScope(details.missingOIDCScope.join(' '));
  if (details.missingOIDCClaims) grant.addOIDCClaims(details.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(details.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  return grant.save();
}

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}
