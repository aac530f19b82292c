// Verify a tokencore access token from a Node.js service with aws-jwt-verify
// (`npm install` here): keys from the issuer's discovery document and JWKS, cached, refetched
// on an unknown kid (a key rotation).
//
//   node verify.mjs https://auth.example.com tokencore-api < token.txt
//
// Prints the verified claims as JSON, or exits 1. What this does NOT check, and how to get it:
// README "Other services verify our tokens" (fingerprint binding, revocation).
import { JwtVerifier } from "aws-jwt-verify";
import { readFileSync } from "node:fs";

const [issuer, audience] = process.argv.slice(2);
if (!issuer || !audience) {
  console.error("usage: node verify.mjs ISSUER AUDIENCE < token");
  process.exit(2);
}

const discovery = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
if (discovery.issuer !== issuer) throw new Error("the discovery document names another issuer");

// One verifier per process, reused for every request.
const verifier = JwtVerifier.create({
  issuer,
  audience,
  jwksUri: discovery.jwks_uri,
  graceSeconds: 30, // CLOCK_SKEW_LEEWAY_SECONDS
  customJwtCheck: ({ header, payload }) => {
    // Refresh tokens (typ rt+jwt, token_use refresh) must never pass as access tokens.
    if (header.typ !== "at+jwt" || payload.token_use !== "access") {
      throw new Error("not an access token");
    }
  },
});

// Hydrate the cache now (no fetch on the first request). aws-jwt-verify itself fetches over
// https only, so against `make dev` (http) this is also what makes it work; on an unknown kid
// (a rotation) it refetches from jwksUri.
verifier.cacheJwks(await (await fetch(discovery.jwks_uri)).json());

try {
  const claims = await verifier.verify(readFileSync(0, "utf8").trim());
  console.log(JSON.stringify(claims));
} catch (error) {
  console.error(`rejected: ${error.name}`); // never the token
  process.exit(1);
}
