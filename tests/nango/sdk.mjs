// One call of the real Nango Node SDK (@nangohq/node 0.71.10), for the Rust end-to-end tests: they check that
// sync-host answers what an app written against Nango expects, so the requests must come from the SDK itself.
//
// stdin:  one JSON object {"host", "key", "webhookSigningKey"?, "call", "args": [...]}
// stdout: one JSON line
//   {"ok": true, "result": ...}                     what `await nango[call](...args)` returned;
//   {"ok": true, "axiosResponse": true, "result": {"status", "data"}}
//                                                   when the SDK hands back the raw axios response instead of its
//                                                   body (triggerSync, startSync, pauseSync, setMetadata,
//                                                   deleteConnection...): only its status and body are kept;
//   {"ok": false, "status", "data"}                 the server answered non-2xx (axios error with `e.response`);
//   {"ok": false, "error": "..."}                   any other throw (argument checks, connection refused...).
// Exit 0 in all of those; exit 2 for a malformed request on stdin.
//
// JSON has no `undefined`: leave trailing arguments out of `args` rather than passing null, since the SDK treats
// null differently (e.g. triggerSync's 4th argument null is sent as `"opts": null`).
//
// Webhook verifiers (synchronous, return a boolean), both keyed by `webhookSigningKey ?? secretKey`; this driver
// builds the client with `secretKey: key`, so without "webhookSigningKey" the API key is the signing key:
//   verifyIncomingWebhookRequest(rawBody: string, headers: object)
//     finds the header named x-nango-hmac-sha256 in any case; true when its value is a string, 64 hex digits
//     (either case) equal to HMAC-SHA256(key, rawBody), compared in constant time. Missing header -> false.
//   verifyWebhookSignature(signatureHeader: string, parsedBody: any)   deprecated (prints a warning on stderr)
//     true when signatureHeader === lowercase hex(SHA256(key + JSON.stringify(parsedBody))), i.e. the
//     X-Nango-Signature value; the body is re-serialized, so the sender must hash compact JSON in the same key order.
import { Nango } from '@nangohq/node';

function emit(line, code) {
    process.stdout.write(JSON.stringify(line) + '\n', () => process.exit(code));
}

function malformed(reason) {
    process.stderr.write(`sdk.mjs: malformed request: ${reason}\n`);
    process.exit(2);
}

function isAxiosResponse(value) {
    return value !== null && typeof value === 'object' && 'status' in value && 'config' in value && 'data' in value;
}

let input = '';
for await (const chunk of process.stdin) {
    input += chunk;
}
let request;
try {
    request = JSON.parse(input);
} catch (e) {
    malformed(String(e));
}
if (request === null || typeof request !== 'object' || Array.isArray(request)) {
    malformed('not a JSON object');
}
const { host, key, webhookSigningKey, call, args = [] } = request;
if (typeof host !== 'string' || typeof key !== 'string' || typeof call !== 'string' || !Array.isArray(args)) {
    malformed('needs "host", "key" and "call" strings and an "args" array');
}
if (typeof Nango.prototype[call] !== 'function') {
    malformed(`Nango has no method ${call}`);
}

try {
    const nango = new Nango({ secretKey: key, host, webhookSigningKey });
    const result = await nango[call](...args);
    if (isAxiosResponse(result)) {
        emit({ ok: true, axiosResponse: true, result: { status: result.status, data: result.data ?? null } }, 0);
    } else {
        emit({ ok: true, result: result ?? null }, 0);
    }
} catch (e) {
    if (e?.response) {
        emit({ ok: false, status: e.response.status, data: e.response.data ?? null }, 0);
    } else {
        emit({ ok: false, error: String(e) }, 0);
    }
}
