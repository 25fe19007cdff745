// End-to-end check of the Lambda path: both Lambda binaries run under `cargo lambda watch` (the Lambda runtime
// API and function URL emulator) against moto's DynamoDB. Started by run.sh, which passes:
//   DEVICE_URL, SERVICE_URL   emulator base URLs of the two functions (http://127.0.0.1:PORT)
//   SERVICE_HOST              the instance's service host name, sent as Host on service calls
//   CONNECTION_STRING, ID_SCOPE, HUB   from `dps-admin instance create` / `hub link`
//
// Device registrations go through the official Azure IoT Node.js device SDK, unmodified. The only thing
// changed is where its socket goes: the transport is handed its own azure-iot-http-base Http object whose
// request options carry {port, request: http.request}, so the SDK's method, path, headers, body, polling and
// response handling are its own while the bytes go in plain HTTP to the emulator's port instead of TLS to 443.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');

const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Http: ProvisioningTransport } = require('azure-iot-provisioning-device-http');
const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');
const { Http: HttpBase } = require('azure-iot-http-base');
// SAS tokens, HTTP calls and registry signatures as tests/node makes them (the Azure SDKs' form).
const h = require('../node/harness');

const env = (name) => h.requiredEnv(name, 'tests/lambda/run.sh');
const DEVICE_URL = new URL(env('DEVICE_URL'));
const SERVICE_URL = new URL(env('SERVICE_URL'));
const SERVICE_HOST = env('SERVICE_HOST');
const ID_SCOPE = env('ID_SCOPE');
const HUB = env('HUB');
const conn = h.parseConnectionString(env('CONNECTION_STRING'));
const API = 'api-version=2021-10-01';
const suffix = crypto.randomBytes(4).toString('hex');

const newKey = () => crypto.randomBytes(32).toString('base64');
const deriveKey = h.deriveDeviceKey;

// One service API call through the emulator, with the instance's host in Host (as on the function URL).
function service(method, path, body, { key = conn.SharedAccessKey, contentType } = {}) {
  const headers = { Host: SERVICE_HOST, Authorization: h.sasToken(conn.HostName, conn.SharedAccessKeyName, key) };
  if (body !== undefined) headers['Content-Type'] = contentType || 'application/json; charset=utf-8';
  return h.send(http, { host: SERVICE_URL.hostname, port: SERVICE_URL.port, method, path: `${path}?${API}`, headers }, body);
}

// The SDK's own Http object, told to use plain HTTP to the emulator's port (see the header comment).
class EmulatorHttp extends HttpBase {
  buildRequest(method, path, headers, host, options, done) {
    if (typeof options === 'function') {
      done = options;
      options = undefined;
    }
    const socket = { port: Number(DEVICE_URL.port), request: http.request };
    return super.buildRequest(method, path, headers, host, options || socket, done);
  }
}

function register(registrationId, key) {
  const transport = new ProvisioningTransport(new EmulatorHttp());
  const security = new SymmetricKeySecurityClient(registrationId, key);
  const client = ProvisioningDeviceClient.create(DEVICE_URL.hostname, ID_SCOPE, transport, security);
  return new Promise((resolve, reject) => {
    client.register((err, result) => (err ? reject(err) : resolve(result)));
  });
}

test('service API: the owner connection string from dps-admin is accepted, a wrong key is not', async () => {
  const ok = await service('POST', '/enrollments/query', { query: '*' });
  assert.equal(ok.status, 200, ok.text);
  assert.ok(Array.isArray(ok.json), ok.text);
  const bad = await service('POST', '/enrollments/query', { query: '*' }, { key: newKey() });
  assert.equal(bad.status, 401, bad.text);
  assert.equal(typeof bad.json.errorCode, 'number', bad.text);
  assert.ok(bad.json.trackingId, bad.text);
});

test('the service function serves its OpenAPI document without credentials', async () => {
  // No Authorization header, no api-version (the `service` helper sends both).
  const res = await new Promise((resolve, reject) => {
    const options = { host: SERVICE_URL.hostname, port: SERVICE_URL.port, path: '/openapi.json', headers: { Host: SERVICE_HOST } };
    http.get(options, (r) => {
      let text = '';
      r.setEncoding('utf8');
      r.on('data', (c) => (text += c));
      r.on('end', () => resolve({ status: r.statusCode, headers: r.headers, text }));
    }).on('error', reject);
  });
  assert.equal(res.status, 200, res.text);
  assert.match(res.headers['content-type'], /^application\/json/);
  const doc = JSON.parse(res.text);
  assert.equal(doc.openapi, '3.1.0');
  assert.ok(doc.paths['/enrollments/{registrationId}'].put, 'Azure routes are documented');
  assert.ok(doc.paths['/policies/{name}/dryRun'].post, 'our extensions are documented');
});

test('individual symmetric-key enrollment: the Azure SDK device registers through the device function', async () => {
  const registrationId = `lambda-dev-${suffix}`;
  const primaryKey = newKey();
  const put = await service('PUT', `/enrollments/${registrationId}`, {
    registrationId,
    attestation: { type: 'symmetricKey', symmetricKey: { primaryKey, secondaryKey: newKey() } },
  });
  assert.equal(put.status, 200, put.text);
  assert.ok(put.json.etag, put.text);

  const result = await register(registrationId, primaryKey);
  assert.equal(result.assignedHub, HUB);
  assert.equal(result.deviceId, registrationId);

  const record = await service('GET', `/registrations/${registrationId}`);
  assert.equal(record.status, 200, record.text);
  assert.equal(record.json.status, 'assigned');
  assert.equal(record.json.assignedHub, HUB);

  // A device that boots again gets the same answer.
  const again = await register(registrationId, primaryKey);
  assert.equal(again.assignedHub, HUB);
  assert.equal(again.deviceId, registrationId);
});

test('group enrollment: a device with a derived key registers; the group lists its registration', async () => {
  const groupId = `lambda-group-${suffix}`;
  const groupKey = newKey();
  const put = await service('PUT', `/enrollmentGroups/${groupId}`, {
    enrollmentGroupId: groupId,
    attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: groupKey, secondaryKey: newKey() } },
  });
  assert.equal(put.status, 200, put.text);

  const registrationId = `lambda-member-${suffix}`;
  const result = await register(registrationId, deriveKey(groupKey, registrationId));
  assert.equal(result.assignedHub, HUB);
  assert.equal(result.deviceId, registrationId);

  const listed = await service('POST', `/registrations/${groupId}/query`, { query: '*' });
  assert.equal(listed.status, 200, listed.text);
  assert.deepEqual(listed.json.map((r) => r.registrationId), [registrationId]);
});

test('a device with the wrong key is refused and nothing is recorded', async () => {
  const registrationId = `lambda-stranger-${suffix}`;
  await assert.rejects(register(registrationId, newKey()));
  const record = await service('GET', `/registrations/${registrationId}`);
  assert.equal(record.status, 404, record.text);
});

test('registration records can be deleted through the service function', async () => {
  const registrationId = `lambda-dev-${suffix}`;
  const del = await service('DELETE', `/registrations/${registrationId}`);
  assert.equal(del.status, 204, del.text);
  const gone = await service('GET', `/registrations/${registrationId}`);
  assert.equal(gone.status, 404, gone.text);
});

// DynamoDB calls per device operation, counted on the wire: moto's request recorder sees every call the device
// function makes (X-Amz-Target names the operation). Budget (issue 3): a first-time registration at most two
// sequential calls, a status poll one; "warm" = the instance is in the function's cache (another device just
// registered). The numbers are printed as test diagnostics.
const MOTO_URL = process.env.MOTO_URL;

async function moto(path, method = 'POST') {
  const res = await fetch(`${MOTO_URL}/moto-api/recorder/${path}`, { method });
  assert.equal(res.status, 200, `moto recorder ${path}`);
  return res.text();
}

async function dynamoCalls(action) {
  await moto('start-recording');
  try {
    await action();
  } finally {
    await moto('stop-recording');
  }
  const lines = (await moto('download-recording', 'GET')).split('\n').filter((l) => l.trim());
  await moto('reset-recording');
  return lines
    .map((l) => JSON.parse(l).headers || {})
    .map((h) => h['X-Amz-Target'] || h['x-amz-target'] || '')
    .filter((t) => t.startsWith('DynamoDB_'))
    .map((t) => t.split('.')[1]);
}

// A raw device request (for the operation status GET, which the SDK skips when the PUT already says assigned).
function device(method, path, registrationId, key, body) {
  const resource = `${ID_SCOPE}/registrations/${registrationId}`;
  const se = Math.floor(Date.now() / 1000) + 3600;
  const sig = crypto.createHmac('sha256', Buffer.from(key, 'base64')).update(`${resource}\n${se}`).digest('base64');
  const payload = JSON.stringify(body ?? {});
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: DEVICE_URL.hostname, port: DEVICE_URL.port, method, path: `/${ID_SCOPE}/${path}?api-version=2019-03-31`,
      headers: {
        Authorization: `SharedAccessSignature sr=${resource}&sig=${encodeURIComponent(sig)}&se=${se}&skn=registration`,
        'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(payload),
      },
    }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode, json: text ? JSON.parse(text) : undefined }));
    });
    req.on('error', reject);
    req.end(payload);
  });
}

test('DynamoDB calls per device operation through the device function stay within the budget', { skip: !MOTO_URL }, async (t) => {
  const key = newKey();
  const ids = [`lambda-warmup-${suffix}`, `lambda-counted-${suffix}`];
  for (const registrationId of ids) {
    const put = await service('PUT', `/enrollments/${registrationId}`, {
      registrationId, attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: key, secondaryKey: key } },
    });
    assert.equal(put.status, 200, put.text);
  }
  const [warmup, counted] = ids;
  await register(warmup, key);

  const rows = [];
  const first = await dynamoCalls(() => register(counted, key));
  rows.push(['first-time registration (warm)', first]);
  const again = await dynamoCalls(() => register(counted, key));
  rows.push(['re-registration (warm)', again]);
  const accepted = await device('PUT', `registrations/${counted}/register`, counted, key, { registrationId: counted });
  assert.equal(accepted.status, 202);
  const poll = await dynamoCalls(async () => {
    const status = await device('GET', `registrations/${counted}/operations/${accepted.json.operationId}`, counted, key);
    assert.equal(status.json.status, 'assigned');
  });
  rows.push(['operation status poll', poll]);

  for (const [name, calls] of rows) t.diagnostic(`dynamodb calls: ${name}: ${calls.length} (${calls.join(', ')})`);
  assert.ok(first.length <= 2, `first-time registration: ${first}`);
  assert.ok(again.length <= 2, `re-registration: ${again}`);
  assert.equal(poll.length, 1, `status poll: ${poll}`);
});

// Custom allocation on the Lambda path: a WebAssembly policy (policies/examples/tenant-prefix, built by
// scripts/setup/wasm.sh) uploaded through the service function is stored in the policy bucket (moto's S3), and
// the device function loads it from there to place a device registering through the Azure SDK.
// TENANT_HUB is linked by run.sh with automatic allocation off, so only the policy can pick it.
test('custom allocation: a wasm policy uploaded through the service function places an SDK device', async () => {
  const TENANT_HUB = env('TENANT_HUB');
  const wasm = path.resolve(__dirname, '..', '..', 'policies', 'target', 'wasm32-unknown-unknown', 'release',
    'tenant_prefix.wasm');
  assert.ok(fs.existsSync(wasm), `${wasm} is missing: run scripts/setup/wasm.sh`);
  const module = fs.readFileSync(wasm);
  const upload = await service('PUT', '/policies/tenant-prefix', module, { contentType: 'application/wasm' });
  assert.equal(upload.status, 200, upload.text);
  assert.equal(upload.json.sha256, crypto.createHash('sha256').update(module).digest('hex'));
  const listed = await service('GET', '/policies');
  assert.equal(listed.status, 200, listed.text);
  assert.ok(listed.json.some((p) => p.name === 'tenant-prefix'), listed.text);

  const groupId = `lambda-tenants-${suffix}`;
  const groupKey = crypto.randomBytes(64).toString('base64');
  const put = await service('PUT', `/enrollmentGroups/${groupId}`, {
    enrollmentGroupId: groupId,
    attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: groupKey, secondaryKey: newKey() } },
    allocationPolicy: 'custom',
    customAllocationDefinition: { policyName: 'tenant-prefix' },
    iotHubs: [TENANT_HUB],
  });
  assert.equal(put.status, 200, put.text);
  // The device function serves enrollment groups from memory for DPS_CACHE_TTL (5 s here, run.sh); a new group
  // becomes visible to a warm function after at most that long, as documented.
  await new Promise((resolve) => setTimeout(resolve, 5500));

  const registrationId = `acme-boiler-${suffix}`;
  const result = await register(registrationId, deriveKey(groupKey, registrationId));
  assert.equal(result.assignedHub, TENANT_HUB);
  assert.equal(result.deviceId, registrationId);

  await assert.rejects(register(`initech-${suffix}`, deriveKey(groupKey, `initech-${suffix}`)),
    'the policy rejects devices of unknown tenants');
});

// Provisioning that reaches the hub: a hub linked with the AWS IoT Core connector (its control-plane and data
// endpoints pointed at moto through the hub's settings) gets a thing with the enrollment's initial twin, tags as
// attributes and desired properties as the shadow's desired state, before the SDK device is told `assigned`.
// moto's IoT and IoT data APIs share paths (/things/NAME...): the service in the credential scope of the
// Authorization header tells them apart (moto checks no signature).
async function iot(service, path) {
  const auth = `AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/${service}/aws4_request, SignedHeaders=host, Signature=0`;
  const res = await fetch(`${MOTO_URL}${path}`, { headers: { Authorization: auth } });
  return { status: res.status, json: await res.json().catch(() => undefined) };
}

test('AWS IoT Core hub: the SDK device gets a thing with attributes and shadow desired state (moto)', { skip: !MOTO_URL }, async (t) => {
  const iotHost = `e2e${suffix}-ats.iot.us-east-1.amazonaws.com`;
  const link = await service('PUT', `/config/linkedHubs/${iotHost}`, {
    applyAllocationPolicy: false,
    connector: { kind: 'awsIotCore', settings: { region: 'us-east-1', endpointUrl: MOTO_URL, dataEndpointUrl: MOTO_URL } },
  });
  assert.equal(link.status, 200, link.text);
  assert.equal(link.json.connector.kind, 'awsIotCore', link.text);
  const shown = await service('GET', `/config/linkedHubs/${iotHost}`);
  assert.equal(shown.status, 200, shown.text);
  assert.equal(shown.json.connector.settings.endpointUrl, MOTO_URL, shown.text);
  // The device function serves instance configuration from its cache for up to DPS_CACHE_TTL (5 s here).
  await new Promise((resolve) => setTimeout(resolve, 5500));

  const registrationId = `lambda-iot-${suffix}`;
  const primaryKey = newKey();
  const put = await service('PUT', `/enrollments/${registrationId}`, {
    registrationId,
    attestation: { type: 'symmetricKey', symmetricKey: { primaryKey, secondaryKey: newKey() } },
    allocationPolicy: 'static',
    iotHubHostName: iotHost,
    initialTwin: { tags: { site: 'berlin' }, properties: { desired: { interval: 30, mode: 'eco' } } },
  });
  assert.equal(put.status, 200, put.text);

  // Warm the device function's instance cache (expired above), so that the count is a warm registration's.
  const warmId = `lambda-iot-warm-${suffix}`;
  const warmKey = newKey();
  const warm = await service('PUT', `/enrollments/${warmId}`, {
    registrationId: warmId, attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: warmKey, secondaryKey: warmKey } },
  });
  assert.equal(warm.status, 200, warm.text);
  await register(warmId, warmKey);

  await moto('start-recording');
  let result;
  try {
    result = await register(registrationId, primaryKey);
  } finally {
    await moto('stop-recording');
  }
  const recorded = (await moto('download-recording', 'GET')).split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
  await moto('reset-recording');
  assert.equal(result.assignedHub, iotHost);
  assert.equal(result.deviceId, registrationId);

  const thing = await iot('iot', `/things/${registrationId}`);
  assert.equal(thing.status, 200, JSON.stringify(thing.json));
  assert.equal(thing.json.attributes.site, 'berlin', JSON.stringify(thing.json));
  const shadow = await iot('iotdata', `/things/${registrationId}/shadow`);
  assert.equal(shadow.status, 200, JSON.stringify(shadow.json));
  assert.deepEqual(shadow.json.state.desired, { interval: 30, mode: 'eco' });

  const target = (r) => String((r.headers || {})['X-Amz-Target'] || '');
  const dynamo = recorded.filter((r) => target(r).startsWith('DynamoDB_'));
  const events = recorded.filter((r) => target(r).startsWith('AWSEvents'));
  const iotCalls = recorded.length - dynamo.length - events.length;
  t.diagnostic(`calls for one first registration into IoT Core: ${recorded.length} in all, ${dynamo.length} DynamoDB, ${iotCalls} IoT, ${events.length} EventBridge`);
  assert.ok(dynamo.length <= 2, `DynamoDB calls: ${dynamo.length}`);
});

// The REST hub connectors on the Lambda path: an HTTP registry (the contract's example receiver) and an Azure IoT
// Hub (the registry stand-in of tests/hubs, reached through DPS_AZURE_HUB_ENDPOINT), each linked with credentials
// the service function seals with KMS (moto) and the device function opens.
function localGet(port, urlPath, headers = {}) {
  return h.send(http, { host: '127.0.0.1', port, method: 'GET', path: urlPath, headers });
}

function registryGet(urlPath) {
  return localGet(Number(env('REGISTRY_PORT')), urlPath, h.registryHeaders(env('REGISTRY_SECRET'), 'GET', urlPath));
}

test('HTTP registry and Azure IoT Hub connectors: SDK devices reach both through the device function', async () => {
  const registryHub = `registry-${suffix}.lambda.test`;
  const azureHub = env('AZURE_HUB');
  const secrets = [env('REGISTRY_SECRET'), env('AZURE_CONNECTION')];
  const links = [
    [registryHub, { kind: 'httpRegistry', settings: { url: `http://127.0.0.1:${env('REGISTRY_PORT')}` }, credentials: secrets[0] }],
    [azureHub, { kind: 'azureIotHub', credentials: secrets[1] }],
  ];
  for (const [host, connector] of links) {
    const link = await service('PUT', `/config/linkedHubs/${host}`, { applyAllocationPolicy: false, connector });
    assert.equal(link.status, 200, link.text);
    const shown = await service('GET', `/config/linkedHubs/${host}`);
    assert.equal(shown.json.connector.credentialsSet, true, shown.text);
    for (const secret of secrets) assert.ok(!shown.text.includes(secret), 'a credential is in a GET answer');
  }
  await new Promise((resolve) => setTimeout(resolve, 5500)); // the device function's instance cache (5 s)

  const initialTwin = { tags: { line: 'l7' }, properties: { desired: { rate: 5 } } };
  const devices = [];
  for (const [host, kind] of [[registryHub, 'reg'], [azureHub, 'az']]) {
    const registrationId = `lambda-${kind}-${suffix}`;
    const primaryKey = newKey();
    const secondaryKey = newKey();
    const put = await service('PUT', `/enrollments/${registrationId}`, {
      registrationId, attestation: { type: 'symmetricKey', symmetricKey: { primaryKey, secondaryKey } },
      allocationPolicy: 'static', iotHubHostName: host, initialTwin,
    });
    assert.equal(put.status, 200, put.text);
    const result = await register(registrationId, primaryKey);
    assert.equal(result.assignedHub, host);
    assert.equal(result.deviceId, registrationId);
    devices.push({ registrationId, primaryKey, secondaryKey });
  }

  const twin = await registryGet(`/devices/${devices[0].registrationId}/twin`);
  assert.equal(twin.status, 200, twin.text);
  assert.deepEqual(twin.json, initialTwin);

  const state = (await localGet(Number(env('AZURE_PORT')), '/_standin/state')).json;
  const held = state[devices[1].registrationId];
  assert.ok(held, `the Azure stand-in does not hold ${devices[1].registrationId}`);
  assert.deepEqual(held.device.authentication,
    { type: 'sas', symmetricKey: { primaryKey: devices[1].primaryKey, secondaryKey: devices[1].secondaryKey } });
  assert.deepEqual(held.twin.tags, initialTwin.tags);
  const { $metadata, $version, ...desired } = held.twin.properties.desired;
  assert.deepEqual(desired, initialTwin.properties.desired);
});
