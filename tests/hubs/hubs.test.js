// Hub connectors end to end, through the real `dps serve` started by run.sh (see there for what runs where).
// The device is the official Azure IoT Node.js device SDK (azure-iot-provisioning-device + -http + symmetric
// key, tests/node's pinned install), unmodified except where its socket goes: its transport gets an
// azure-iot-http-base Http object whose request options carry the server's port (it always uses 443
// otherwise), so method, path, headers, body and answer handling are the SDK's own.
//
// Environment from run.sh: DPS_PORT, ID_SCOPE, CONNECTION_STRING, SERVICE_HOST, MOTO, AZURE_HUB, AZURE_KEY,
// AZURE_PORT, REGISTRY_SECRET, REGISTRY_PORT, RECEIVER, PYTHON, WORK, DPS_LOGS (and NODE_EXTRA_CA_CERTS).
'use strict';

const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const net = require('node:net');
const path = require('node:path');
const { createRequire } = require('node:module');
// SAS tokens, HTTP calls and registry signatures as tests/node makes them (the Azure SDKs' form).
const { registryHeaders, requiredEnv, sasToken, send, serviceToken } = require('../node/harness');
const { after, before, describe, test } = require('node:test');

const root = path.resolve(__dirname, '..', '..');
const sdk = createRequire(path.join(root, 'tests', 'node', 'package.json'));
const { ProvisioningDeviceClient } = sdk('azure-iot-provisioning-device');
const { Http: ProvisioningHttp } = sdk('azure-iot-provisioning-device-http');
const { SymmetricKeySecurityClient } = sdk('azure-iot-security-symmetric-key');
// The transport's own dependency, resolved from it (whatever npm hoisted).
const { Http: HttpBase } = createRequire(sdk.resolve('azure-iot-provisioning-device-http'))('azure-iot-http-base');

const env = (name) => requiredEnv(name, 'tests/hubs/run.sh');
const DPS_PORT = Number(env('DPS_PORT'));
const ID_SCOPE = env('ID_SCOPE');
const SERVICE_HOST = env('SERVICE_HOST');
const CONNECTION_STRING = env('CONNECTION_STRING');
const MOTO = env('MOTO');
const AZURE_HUB = env('AZURE_HUB');
const AZURE_KEY = env('AZURE_KEY');
const AZURE = `http://127.0.0.1:${env('AZURE_PORT')}`;
const REGISTRY_SECRET = env('REGISTRY_SECRET');
const REGISTRY_PORT = Number(env('REGISTRY_PORT'));
const WORK = env('WORK');

const AWS_HUB = 'e2ehubs0123456-ats.iot.us-east-1.amazonaws.com';
const REGISTRY_HUB = 'registry.hubs-e2e.test';
const RECORD_HUB = 'record-only.hubs-e2e.test';
const DOWN_HUB = 'down.hubs-e2e.test';
const ONE_WRITE_HUB = 'registry-one-write.hubs-e2e.test';
const AZURE_CONNECTION = `HostName=${AZURE_HUB};SharedAccessKeyName=registryReadWrite;SharedAccessKey=${AZURE_KEY}`;
const API = 'api-version=2021-10-01';
const suffix = crypto.randomBytes(3).toString('hex');
const newKey = () => crypto.randomBytes(32).toString('base64');

const INITIAL_TWIN = {
  tags: { site: 'lab-1', floor: 3 },
  properties: { desired: { interval: 30, mode: 'eco', limits: { max: 80 } } },
};

/** The service API of dps, over HTTPS with a SAS token of the instance's owner policy. */
function service(method, urlPath, body, headers = {}) {
  return send(https, {
    host: '127.0.0.1', port: DPS_PORT, servername: 'localhost', method, path: `${urlPath}?${API}`,
    headers: {
      Host: SERVICE_HOST,
      Authorization: serviceToken(CONNECTION_STRING),
      ...headers,
    },
  }, body);
}

async function linkHub(hostName, connector) {
  const put = await service('PUT', `/config/linkedHubs/${hostName}`, {
    allocationWeight: 1, applyAllocationPolicy: false, ...(connector ? { connector } : {}),
  });
  assert.equal(put.status, 200, put.text);
  return put;
}

async function enroll(registrationId, hub, extra = {}) {
  const [primaryKey, secondaryKey] = [newKey(), newKey()];
  const put = await service('PUT', `/enrollments/${registrationId}`, {
    registrationId,
    attestation: { type: 'symmetricKey', symmetricKey: { primaryKey, secondaryKey } },
    allocationPolicy: 'static',
    iotHubs: [hub],
    initialTwin: INITIAL_TWIN,
    ...extra,
  });
  assert.equal(put.status, 200, put.text);
  return { registrationId, primaryKey, secondaryKey };
}

// The SDK's own Http object, told to use the server's port (see the header comment).
class PortHttp extends HttpBase {
  buildRequest(method, urlPath, headers, host, options, done) {
    if (typeof options === 'function') {
      done = options;
      options = undefined;
    }
    return super.buildRequest(method, urlPath, headers, host, options || { port: DPS_PORT }, done);
  }
}

/** Register with the SDK; resolves {ok, state (registrationState), ms} — a failed registration is not thrown. */
function register(registrationId, key) {
  const security = new SymmetricKeySecurityClient(registrationId, key);
  const client = ProvisioningDeviceClient.create('localhost', ID_SCOPE, new ProvisioningHttp(new PortHttp()), security);
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    client.register((err, result) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (!err) return resolve({ ok: true, state: result, ms });
      if (err.result && err.result.registrationState) {
        return resolve({ ok: false, status: err.result.status, state: err.result.registrationState, ms });
      }
      reject(err);
    });
  });
}

async function registerAssigned(registrationId, key, hub) {
  const r = await register(registrationId, key);
  assert.ok(r.ok, `registration of ${registrationId} failed: ${JSON.stringify(r.state)}`);
  assert.equal(r.state.status, 'assigned');
  assert.equal(r.state.assignedHub, hub);
  assert.equal(r.state.deviceId, registrationId);
  return r;
}

/** A signed call to an HTTP registry receiver (the contract's signing, as the connector signs). */
function registryCall(port, method, urlPath) {
  return send(http, { host: '127.0.0.1', port, method, path: urlPath, headers: registryHeaders(REGISTRY_SECRET, method, urlPath) });
}

const standin = (urlPath) => send(http, { host: '127.0.0.1', port: Number(env('AZURE_PORT')), method: 'GET', path: urlPath });

/** Change a twin in the Azure stand-in as a back-end application would: PATCH with the hub policy's token. */
async function patchAzureTwin(deviceId, patch) {
  const got = await send(http, {
    host: '127.0.0.1', port: Number(env('AZURE_PORT')), method: 'GET',
    path: `/twins/${encodeURIComponent(deviceId)}?api-version=2021-04-12`,
    headers: { Authorization: serviceToken(AZURE_CONNECTION) },
  });
  assert.equal(got.status, 200, got.text);
  const patched = await send(http, {
    host: '127.0.0.1', port: Number(env('AZURE_PORT')), method: 'PATCH',
    path: `/twins/${encodeURIComponent(deviceId)}?api-version=2021-04-12`,
    headers: {
      Authorization: serviceToken(AZURE_CONNECTION),
      'If-Match': `"${got.json.etag}"`,
      'Content-Type': 'application/json; charset=utf-8',
    },
  }, patch);
  assert.equal(patched.status, 200, patched.text);
  return patched.json;
}

/** moto's REST API: IoT and IoT data share paths, so the credential scope's service picks the one meant. */
function moto(service_, method, urlPath) {
  const url = new URL(MOTO);
  return send(http, {
    host: url.hostname, port: url.port, method, path: urlPath,
    headers: {
      Authorization: `AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/${service_}/aws4_request, SignedHeaders=host, Signature=0`,
    },
  });
}

/**
 * Start an example receiver on `port` (its pid is recorded for run.sh's cleanup too). `oneWrite`: the same
 * receiver with its handler's answers forced into one send (wbufsize), as a control: the example used to write
 * headers and body separately, and on a kept-alive connection Nagle's algorithm held the body until the
 * client's delayed ACK (about 40 ms per call on Linux); it now buffers each answer itself, so both rows should
 * agree.
 */
async function startReceiver(port, { oneWrite = false } = {}) {
  const launch = oneWrite
    ? ['-c', [
      'import importlib.util, sys',
      'spec = importlib.util.spec_from_file_location("receiver", sys.argv[1])',
      'receiver = importlib.util.module_from_spec(spec)',
      'spec.loader.exec_module(receiver)',
      'receiver.Handler.wbufsize = -1',
      'sys.argv = sys.argv[1:]',
      'receiver.main()',
    ].join('\n'), env('RECEIVER')]
    : [env('RECEIVER')];
  const child = spawn(env('PYTHON'), [...launch, '--port', String(port)], {
    env: { ...process.env, DPS_REGISTRY_SECRET: REGISTRY_SECRET },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  fs.appendFileSync(path.join(WORK, 'child.pids'), `${child.pid}\n`);
  await new Promise((resolve, reject) => {
    child.stdout.once('data', resolve);
    child.once('exit', (code) => reject(new Error(`receiver exited with ${code}`)));
  });
  return child;
}

async function freePort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

describe('hub connectors through dps serve', () => {
  let downPort;
  let oneWritePort;
  const children = [];

  before(async () => {
    downPort = await freePort();
    oneWritePort = await freePort();
    children.push(await startReceiver(oneWritePort, { oneWrite: true }));
    // Every hub is linked before any device registers (the instance's configuration may be cached).
    await linkHub(RECORD_HUB);
    await linkHub(REGISTRY_HUB, {
      kind: 'httpRegistry', settings: { url: `http://127.0.0.1:${REGISTRY_PORT}` }, credentials: REGISTRY_SECRET,
    });
    await linkHub(AZURE_HUB, { kind: 'azureIotHub', credentials: AZURE_CONNECTION });
    await linkHub(AWS_HUB, {
      kind: 'awsIotCore', settings: { region: 'us-east-1', endpointUrl: MOTO, dataEndpointUrl: MOTO },
    });
    await linkHub(ONE_WRITE_HUB, {
      kind: 'httpRegistry', settings: { url: `http://127.0.0.1:${oneWritePort}` }, credentials: REGISTRY_SECRET,
    });
    await linkHub(DOWN_HUB, {
      kind: 'httpRegistry', settings: { url: `http://127.0.0.1:${downPort}` }, credentials: REGISTRY_SECRET,
    });
  });

  after(() => {
    for (const child of children) child.kill('SIGTERM');
  });

  test('linked hubs show kind, settings and credentialsSet, never the credentials', async () => {
    for (const host of [REGISTRY_HUB, AZURE_HUB]) {
      const got = await service('GET', `/config/linkedHubs/${host}`);
      assert.equal(got.status, 200, got.text);
      assert.equal(got.json.connector.credentialsSet, true, got.text);
      assert.equal(got.json.connector.credentials, undefined, got.text);
    }
    const all = await service('GET', '/config');
    assert.equal(all.status, 200, all.text);
    for (const text of [all.text, (await service('GET', '/config/linkedHubs')).text]) {
      assert.ok(!text.includes(REGISTRY_SECRET), 'the registry secret is in an answer');
      assert.ok(!text.includes(AZURE_KEY), 'the Azure key is in an answer');
    }
    const registry = await service('GET', `/config/linkedHubs/${REGISTRY_HUB}`);
    assert.deepEqual(registry.json.connector,
      { kind: 'httpRegistry', settings: { url: `http://127.0.0.1:${REGISTRY_PORT}` }, credentialsSet: true });
    const aws = await service('GET', `/config/linkedHubs/${AWS_HUB}`);
    assert.equal(aws.json.connector.kind, 'awsIotCore');
    assert.notEqual(aws.json.connector.credentialsSet, true);
  });

  test('HTTP registry: the SDK device is assigned and the receiver holds it with the initial twin', async () => {
    const device = await enroll(`hubs-reg-${suffix}`, REGISTRY_HUB);
    await registerAssigned(device.registrationId, device.primaryKey, REGISTRY_HUB);
    const twin = await registryCall(REGISTRY_PORT, 'GET', `/devices/${device.registrationId}/twin`);
    assert.equal(twin.status, 200, twin.text);
    assert.deepEqual(twin.json, INITIAL_TWIN);
    const none = await registryCall(REGISTRY_PORT, 'GET', `/devices/hubs-nobody-${suffix}/twin`);
    assert.equal(none.status, 404, 'the receiver answers 404 for a device it does not hold');
    const unsigned = await send(http, {
      host: '127.0.0.1', port: REGISTRY_PORT, method: 'GET', path: `/devices/${device.registrationId}/twin`,
    });
    assert.equal(unsigned.status, 401, 'the receiver refuses an unsigned request');
  });

  test('Azure IoT Hub: the stand-in holds the device (sas with its keys) and the initial twin', async () => {
    const device = await enroll(`hubs-az-${suffix}`, AZURE_HUB);
    await registerAssigned(device.registrationId, device.primaryKey, AZURE_HUB);
    const state = (await standin('/_standin/state')).json;
    const held = state[device.registrationId];
    assert.ok(held, `the stand-in does not hold ${device.registrationId}`);
    assert.deepEqual(held.device.authentication, {
      type: 'sas', symmetricKey: { primaryKey: device.primaryKey, secondaryKey: device.secondaryKey },
    });
    assert.equal(held.device.status, 'enabled');
    assert.deepEqual(held.twin.tags, INITIAL_TWIN.tags);
    const { $metadata, $version, ...desired } = held.twin.properties.desired;
    assert.deepEqual(desired, INITIAL_TWIN.properties.desired);
    // The stand-in's 200s mean something: a token signed with another key is refused.
    const forged = await send(http, {
      host: '127.0.0.1', port: Number(env('AZURE_PORT')), method: 'GET',
      path: `/twins/${device.registrationId}?api-version=2021-04-12`,
      headers: { Authorization: serviceToken(`HostName=${AZURE_HUB};SharedAccessKeyName=registryReadWrite;SharedAccessKey=${newKey()}`) },
    });
    assert.equal(forged.status, 401, forged.text);
  });

  test('move Azure -> AWS IoT Core with migrateDeviceData: the changed twin arrives as shadow and attributes', async () => {
    const id = `hubs-move-${suffix}`;
    const device = await enroll(id, AZURE_HUB, {
      reprovisionPolicy: { updateHubAssignment: true, migrateDeviceData: true },
    });
    await registerAssigned(id, device.primaryKey, AZURE_HUB);

    // A back-end changes the device's twin in its Azure hub.
    await patchAzureTwin(id, {
      tags: { site: 'lab-2' },
      properties: { desired: { interval: 60, mode: null, limits: { max: 90 }, fw: { version: '2.0' } } },
    });
    const migratedDesired = { interval: 60, limits: { max: 90 }, fw: { version: '2.0' } };

    // The enrollment now points at the AWS IoT Core hub.
    const got = await service('GET', `/enrollments/${id}`);
    assert.equal(got.status, 200, got.text);
    const put = await service('PUT', `/enrollments/${id}`, { ...got.json, iotHubs: [AWS_HUB] },
      { 'If-Match': got.json.etag });
    assert.equal(put.status, 200, put.text);

    const moved = await register(id, device.primaryKey);
    assert.ok(moved.ok, `the move failed: ${JSON.stringify(moved.state)}`);
    assert.equal(moved.state.assignedHub, AWS_HUB);
    assert.equal(moved.state.substatus, 'deviceDataMigrated');

    const thing = await moto('iot', 'GET', `/things/${id}`);
    assert.equal(thing.status, 200, `moto has no thing ${id}: ${thing.text}`);
    assert.deepEqual(thing.json.attributes, { site: 'lab-2', floor: '3' });
    const shadow = await moto('iotdata', 'GET', `/things/${id}/shadow`);
    assert.equal(shadow.status, 200, shadow.text);
    assert.deepEqual(shadow.json.state.desired, migratedDesired);

    const state = (await standin('/_standin/state')).json;
    assert.equal(state[id], undefined, 'the device is still in the Azure hub after the move');
    const calls = (await standin('/_standin/requests')).json.filter((r) => r.path.endsWith(`/${id}`));
    const read = calls.findLastIndex((r) => r.method === 'GET' && r.path === `/twins/${id}` && r.status === 200);
    const removed = calls.findIndex((r) => r.method === 'DELETE' && r.path === `/devices/${id}` && r.status === 204);
    assert.ok(read >= 0 && removed > read, `expected the twin read, then the delete: ${JSON.stringify(calls)}`);

    const record = await service('GET', `/registrations/${id}`);
    assert.equal(record.status, 200, record.text);
    assert.equal(record.json.assignedHub, AWS_HUB);
    assert.equal(record.json.status, 'assigned');
    assert.ok(!record.json.pendingHubRemovals || record.json.pendingHubRemovals.length === 0, record.text);
  });

  test('AWS IoT Core, symmetric key with a CSR: the answer carries the issued certificate, attached to the thing', async () => {
    const id = `hubs-csr-${suffix}`;
    const device = await enroll(id, AWS_HUB);
    // A P-256 key and a PKCS#10 request for CN=<registration ID>, as a device makes them (the venv's cryptography).
    const csr = require('node:child_process').execFileSync(env('PYTHON'), ['-c', [
      'import base64, sys',
      'from cryptography import x509',
      'from cryptography.hazmat.primitives import hashes, serialization',
      'from cryptography.hazmat.primitives.asymmetric import ec',
      'from cryptography.x509.oid import NameOID',
      'key = ec.generate_private_key(ec.SECP256R1())',
      'name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, sys.argv[1])])',
      'req = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())',
      'print(base64.b64encode(req.public_bytes(serialization.Encoding.DER)).decode())',
    ].join('\n'), id]).toString().trim();
    const resource = `${ID_SCOPE}/registrations/${id}`;
    const devicePath = (tail) => `/${ID_SCOPE}/registrations/${id}/${tail}?api-version=2025-07-01-preview`;
    const call = (method, tail, body) => send(https, {
      host: '127.0.0.1', port: DPS_PORT, servername: 'localhost', method, path: devicePath(tail),
      headers: { Authorization: sasToken(resource, 'registration', device.primaryKey) },
    }, body);
    let answer = await call('PUT', 'register', { registrationId: id, csr });
    for (let i = 0; answer.status === 202 && answer.json.status === 'assigning' && i < 20; i++) {
      await new Promise((r) => setTimeout(r, 250));
      answer = await call('GET', `operations/${answer.json.operationId}`);
    }
    assert.ok([200, 202].includes(answer.status), answer.text);
    const state = answer.json.registrationState;
    assert.equal(state.status, 'assigned', answer.text);
    assert.equal(state.assignedHub, AWS_HUB);
    assert.ok(Array.isArray(state.issuedCertificateChain) && state.issuedCertificateChain.length >= 1, answer.text);
    const leaf = new crypto.X509Certificate(Buffer.from(state.issuedCertificateChain[0], 'base64'));
    // Its subject is the CSR's (moto signs a key of its own instead of the CSR's; IoT Core certifies the CSR's key).
    assert.equal(leaf.subject, `CN=${id}`);

    // In the hub: the thing exists and the issued certificate is its principal, active.
    const principals = await moto('iot', 'GET', `/things/${id}/principals`);
    assert.equal(principals.status, 200, principals.text);
    assert.equal(principals.json.principals.length, 1, principals.text);
    const certificateId = principals.json.principals[0].split('/').pop();
    const described = await moto('iot', 'GET', `/certificates/${certificateId}`);
    assert.equal(described.status, 200, described.text);
    assert.equal(described.json.certificateDescription.status, 'ACTIVE');
    const pem = described.json.certificateDescription.certificatePem;
    assert.equal(new crypto.X509Certificate(pem).fingerprint256, leaf.fingerprint256, 'the hub holds the certificate the device got');
  });

  test('a hub that is down: failed 503301 naming the hub, no assigned record; the retry is assigned', async () => {
    const id = `hubs-down-${suffix}`;
    const device = await enroll(id, DOWN_HUB);
    const failed = await register(id, device.primaryKey);
    assert.equal(failed.ok, false, `registered into a hub that is down: ${JSON.stringify(failed.state)}`);
    assert.equal(failed.status, 'failed');
    assert.equal(failed.state.errorCode, 503301, JSON.stringify(failed.state));
    assert.match(failed.state.errorMessage, new RegExp(DOWN_HUB.replace(/\./g, '\\.')));
    console.log(`# hub down: the registration failed after ${failed.ms.toFixed(0)} ms`);

    const record = await service('GET', `/registrations/${id}`);
    assert.equal(record.status, 200, record.text);
    assert.equal(record.json.status, 'failed', record.text);
    assert.equal(record.json.errorCode, 503301, record.text);
    assert.ok(!record.json.assignedHub, `a failed first registration names a hub: ${record.text}`);
    console.log(`# hub down: errorMessage ${JSON.stringify(record.json.errorMessage)}; ` +
      `pendingHubRemovals ${JSON.stringify(record.json.pendingHubRemovals || [])}`);

    children.push(await startReceiver(downPort));
    const retried = await registerAssigned(id, device.primaryKey, DOWN_HUB);
    assert.equal(retried.state.substatus, 'initialAssignment');
    const twin = await registryCall(downPort, 'GET', `/devices/${id}/twin`);
    assert.equal(twin.status, 200, twin.text);
    assert.deepEqual(twin.json, INITIAL_TWIN);
    const after = await service('GET', `/registrations/${id}`);
    assert.equal(after.json.status, 'assigned', after.text);
    assert.equal(after.json.assignedHub, DOWN_HUB, after.text);
    assert.ok(!after.json.pendingHubRemovals || after.json.pendingHubRemovals.length === 0,
      `a removal is still owed to the hub the device is assigned to: ${after.text}`);
  });

  test('added latency per registration, each connector vs a record-only hub (printed, not asserted)', async () => {
    const rounds = 10;
    const hubs = {
      'record only': RECORD_HUB,
      'httpRegistry (example receiver as shipped)': REGISTRY_HUB,
      'httpRegistry (same receiver, one write per answer)': ONE_WRITE_HUB,
      'azureIotHub (stand-in)': AZURE_HUB,
      'awsIotCore (moto)': AWS_HUB,
    };
    const devices = {};
    for (const [name, hub] of Object.entries(hubs)) {
      devices[name] = [];
      const tag = name.split(' ')[0];
      for (let i = 0; i <= rounds; i++) devices[name].push(await enroll(`hubs-lat-${tag}-${devices.n = (devices.n || 0) + 1}-${suffix}`, hub));
    }
    const times = Object.fromEntries(Object.keys(hubs).map((name) => [name, []]));
    // Round 0 warms every path up (TLS to dps, the connectors' clients) and is not counted; the hubs take turns.
    for (let i = 0; i <= rounds; i++) {
      for (const [name, hub] of Object.entries(hubs)) {
        const d = devices[name][i];
        const r = await registerAssigned(d.registrationId, d.primaryKey, hub);
        if (i > 0) times[name].push(r.ms);
      }
    }
    const base = median(times['record only']);
    console.log(`# registration through the Node SDK (HTTPS, one PUT), median of ${rounds}:`);
    for (const [name, xs] of Object.entries(times)) {
      const m = median(xs);
      const extra = name === 'record only' ? '' : `, added ${(m - base).toFixed(1)} ms`;
      console.log(`#   ${name.padEnd(52)} ${m.toFixed(1)} ms (min ${Math.min(...xs).toFixed(1)}, max ${Math.max(...xs).toFixed(1)})${extra}`);
    }
  });

  test('no hub credential in dps output or logs', () => {
    for (const file of env('DPS_LOGS').split(':')) {
      const text = fs.readFileSync(file, 'utf8');
      assert.ok(!text.includes(REGISTRY_SECRET), `the registry secret is in ${path.basename(file)}`);
      assert.ok(!text.includes(AZURE_KEY), `the Azure hub key is in ${path.basename(file)}`);
      assert.ok(!text.includes('SharedAccessSignature'), `a SAS token is in ${path.basename(file)}`);
    }
  });
});
