// End-to-end: custom allocation by WebAssembly policies. Every example policy (policies/examples/, built by
// scripts/setup/wasm.sh) is uploaded through the service API's /policies extension, named by enrollments through
// the official ProvisioningServiceClient (`customAllocationDefinition: {policyName}`), and decides the hub of
// devices that register with the official device client (HTTP transport, symmetric keys) sending a payload.
// A hostile module (an infinite loop) fails only its own registration. Run with `node --test tests/node/`.
'use strict';

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { after, before, describe, test } = require('node:test');

const { ProvisioningServiceClient } = require('azure-iot-provisioning-service');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Http: DeviceHttp } = require('azure-iot-provisioning-device-http');
const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');

const h = require('./harness');

const API = 'api-version=2021-10-01';
const WASM_DIR = path.resolve(__dirname, '..', '..', 'policies', 'target', 'wasm32-unknown-unknown', 'release');

// Hubs named for what the example policies look for (see their sources under policies/examples/).
const HUB_EU = 'hub-eu.example.net'; // route-by-payload: first label ends in -{region}
const HUB_US = 'hub-us.example.net';
const ACME = 'acme-hub.example.net'; // tenant-prefix: acme-* devices
const GLOBEX = 'globex-hub.example.net'; // tenant-prefix: globex-* devices
const LARGE = 'cap-large.example.net'; // weighted-capacity: weight 5
const MID = 'cap-mid.example.net'; // weight 2
const SMALL = 'cap-small.example.net'; // weight 1
const HUBS = [HUB_EU, HUB_US, ACME, GLOBEX, LARGE, MID, SMALL];

const newKey = () => crypto.randomBytes(32).toString('base64');
const symmetricKey = (primaryKey = newKey(), secondaryKey = newKey()) => ({
  type: 'symmetricKey',
  symmetricKey: { primaryKey, secondaryKey },
});

/** An example policy module; missing modules fail the suite (never skipped). */
function example(file) {
  const modulePath = path.join(WASM_DIR, file);
  if (!fs.existsSync(modulePath)) {
    throw new Error(`example policy ${modulePath} is missing: run scripts/setup/wasm.sh to build the policies`);
  }
  return fs.readFileSync(modulePath);
}

/** Register with the SDK's HTTP transport and a symmetric key; resolves with the registration result. */
function registerDevice(server, registrationId, key, payload) {
  const security = new SymmetricKeySecurityClient(registrationId, key);
  const client = ProvisioningDeviceClient.create('localhost', server.info.idScope, new DeviceHttp(), security);
  if (payload !== undefined) client.setProvisioningPayload(payload);
  return new Promise((resolve, reject) => client.register((err, result) => (err ? reject(err) : resolve(result))));
}

/** Register, expecting a failed registration; resolves with its registrationState (errorCode, errorMessage). */
async function registrationFailure(server, registrationId, key, payload) {
  let failure;
  await assert.rejects(registerDevice(server, registrationId, key, payload), (err) => {
    failure = err;
    return true;
  });
  assert.equal(failure.name, 'ProvisioningRegistrationFailedError', `${failure.name}: ${failure.message}`);
  const state = failure.result && failure.result.registrationState;
  assert.ok(state, `the failed registration carries its state: ${JSON.stringify(failure.result)}`);
  assert.equal(state.status, 'failed');
  return state;
}

/** FNV-1a 64 over UTF-8, as policies/examples/weighted-capacity computes it. */
function fnv1a(text) {
  let hash = 0xcbf29ce484222325n;
  for (const byte of Buffer.from(text, 'utf8')) {
    hash = ((hash ^ BigInt(byte)) * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return hash;
}

/** The hub weighted-capacity picks for `registrationId` among `hubs`, and the weights it uses. */
function weightedPick(registrationId, hubs) {
  const weight = (hub) => {
    const label = hub.split('.')[0].toLowerCase();
    return label.endsWith('-large') ? 5 : label.endsWith('-small') ? 1 : 2;
  };
  const sorted = [...hubs].sort();
  const total = sorted.reduce((sum, hub) => sum + weight(hub), 0);
  let ticket = Number(fnv1a(registrationId.toLowerCase()) % BigInt(total));
  for (const hub of sorted) {
    if (ticket < weight(hub)) return { hub, weight: weight(hub), totalWeight: total };
    ticket -= weight(hub);
  }
  throw new Error('no hub');
}

/**
 * policies/fixtures/infinite-loop.wat, assembled here (no wat compiler in Node): the four ABI exports, and
 * `dps_allocate` spinning forever. Stopped by fuel (or by the deadline on a slow machine).
 */
function infiniteLoopModule() {
  const leb = (n) => {
    const out = [];
    do {
      let byte = n & 0x7f;
      n >>>= 7;
      if (n !== 0) byte |= 0x80;
      out.push(byte);
    } while (n !== 0);
    return out;
  };
  const vec = (items) => [...leb(items.length), ...items.flat()];
  const name = (text) => [...leb(text.length), ...Buffer.from(text, 'utf8')];
  const section = (id, content) => [id, ...leb(content.length), ...content];
  const [I32, I64] = [0x7f, 0x7e];
  const types = vec([
    [0x60, 0, 1, I32], // () -> i32
    [0x60, 1, I32, 1, I32], // (i32) -> i32
    [0x60, 2, I32, I32, 1, I64], // (i32, i32) -> i64
  ]);
  const body = (code) => [...leb(code.length + 1), 0 /* no locals */, ...code];
  const bytes = [
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, types),
    ...section(3, vec([[0], [1], [2]])),
    ...section(5, vec([[0x00, 1]])), // one memory, min 1 page
    ...section(
      7,
      vec([
        [...name('memory'), 0x02, 0],
        [...name('dps_abi_version'), 0x00, 0],
        [...name('dps_alloc'), 0x00, 1],
        [...name('dps_allocate'), 0x00, 2],
      ]),
    ),
    ...section(
      10,
      vec([
        body([0x41, 1, 0x0b]), // i32.const 1
        body([0x41, ...leb(1024), 0x0b]), // the request goes at offset 1024
        body([0x03, 0x40, 0x0c, 0, 0x0b, 0x00, 0x0b]), // loop (br 0) end; unreachable
      ]),
    ),
  ];
  const module = Buffer.from(bytes);
  assert.ok(WebAssembly.validate(module), 'the hand-assembled module is valid WebAssembly');
  return module;
}

describe('custom allocation by WebAssembly policies, with the Azure IoT Node.js SDKs', () => {
  let suite;
  let server;
  let service;
  let auth;

  before(async () => {
    // Fail before starting anything when the example policies are not built.
    for (const file of ['route_by_payload.wasm', 'tenant_prefix.wasm', 'weighted_capacity.wasm']) example(file);
    suite = await h.startSuite((dps) => JSON.parse(dps(['instance', 'show', 'default', '--json'])));
    const shown = suite.prepared;
    server = suite.server;
    service = ProvisioningServiceClient.fromConnectionString(shown.connectionString);
    auth = () => ({ Authorization: h.serviceToken(shown.connectionString) });
    for (const hub of HUBS) {
      const put = await h.request('PUT', `/config/linkedHubs/${hub}?${API}`, { headers: auth(), body: {} });
      assert.equal(put.status, 200, JSON.stringify(put.body));
    }
  });

  after(async () => {
    if (suite) await suite.close();
  });

  /** PUT /policies/{name} with the module as application/wasm. */
  const upload = (name, module, contentType = 'application/wasm', expectContinue = false) =>
    h.request('PUT', `/policies/${name}?${API}`, { headers: auth(), raw: module, contentType, expectContinue });

  /** Create an individual enrollment or a group allocated by `policyName`; resolves with its primary key. */
  async function enrollCustom({ registrationId, enrollmentGroupId, policyName, iotHubs }) {
    const key = enrollmentGroupId ? crypto.randomBytes(64).toString('base64') : newKey();
    const common = {
      attestation: symmetricKey(key),
      allocationPolicy: 'custom',
      customAllocationDefinition: { policyName },
      iotHubs,
    };
    const { result } = enrollmentGroupId
      ? await h.callback((done) => service.createOrUpdateEnrollmentGroup({ enrollmentGroupId, ...common }, done))
      : await h.callback((done) => service.createOrUpdateIndividualEnrollment({ registrationId, ...common }, done));
    assert.equal(result.allocationPolicy, 'custom');
    assert.deepEqual(result.customAllocationDefinition, { policyName });
    return key;
  }

  test('uploads the example policies through the service API', async () => {
    const modules = {
      'route-by-payload': example('route_by_payload.wasm'),
      'tenant-prefix': example('tenant_prefix.wasm'),
      'weighted-capacity': example('weighted_capacity.wasm'),
    };
    for (const [name, module] of Object.entries(modules)) {
      const put = await upload(name, module);
      assert.equal(put.status, 200, JSON.stringify(put.body));
      assert.equal(put.body.name, name);
      assert.equal(put.body.sha256, crypto.createHash('sha256').update(module).digest('hex'));
      assert.equal(put.body.size, module.length);
      assert.equal(put.body.abiVersion, 1);
      assert.ok(put.body.exports.includes('dps_allocate'));
    }
    const list = await h.request('GET', `/policies?${API}`, { headers: auth() });
    assert.equal(list.status, 200);
    assert.deepEqual(list.body.map((p) => p.name).sort(), Object.keys(modules));
    const one = await h.request('GET', `/Policies/TENANT-PREFIX?${API}`, { headers: auth() });
    assert.equal(one.status, 200);
    assert.equal(one.body.name, 'tenant-prefix');

    // Refusals: not application/wasm (415), over the 4 MiB module limit (413), not a policy (400), no key (401).
    const wrongType = await upload('other', modules['tenant-prefix'], 'application/octet-stream');
    assert.equal(wrongType.status, 415, JSON.stringify(wrongType.body));
    // (With 100-continue: the server refuses by Content-Length without reading the body.)
    const huge = await upload('other', Buffer.alloc(4 * 1024 * 1024 + 1), 'application/wasm', true);
    assert.equal(huge.status, 413, JSON.stringify(huge.body));
    assert.equal(huge.body.errorCode, 413001);
    const garbage = await upload('other', Buffer.from('not a module'));
    assert.equal(garbage.status, 400);
    assert.match(garbage.body.message, /not valid WebAssembly/);
    // Over 96 KB is fine on this route alone: a 200 KB body reaches validation.
    const big = await upload('other', Buffer.alloc(200 * 1024, 0xff));
    assert.equal(big.status, 400, JSON.stringify(big.body));
    const bigJson = await h.request('POST', `/policies/tenant-prefix/dryRun?${API}`, {
      headers: auth(),
      body: { deviceRuntimeContext: { registrationId: 'x', payload: 'x'.repeat(200 * 1024) } },
      expectContinue: true,
    });
    assert.equal(bigJson.status, 413, 'a dry run keeps the 96 KB limit');
    const anonymous = await h.request('GET', `/policies?${API}`);
    assert.equal(anonymous.status, 401);
    const listed = await h.request('GET', `/policies?${API}`, { headers: auth() });
    assert.equal(listed.body.length, 3, 'refused uploads store nothing');

    // An enrollment may only name an uploaded policy.
    await assert.rejects(
      h.callback((done) =>
        service.createOrUpdateIndividualEnrollment(
          {
            registrationId: 'wasm-missing',
            attestation: symmetricKey(),
            allocationPolicy: 'custom',
            customAllocationDefinition: { policyName: 'never-uploaded' },
          },
          done,
        ),
      ),
      (err) => err.response && err.response.statusCode === 400,
    );
  });

  test('route-by-payload: the device payload picks the hub, and the policy answers a payload', async () => {
    const key = await enrollCustom({
      registrationId: 'wasm-route-1',
      policyName: 'route-by-payload',
      iotHubs: [HUB_EU, HUB_US],
    });
    const us = await registerDevice(server, 'wasm-route-1', key, { region: 'US', model: 'pump' });
    assert.equal(us.status, 'assigned');
    assert.equal(us.assignedHub, HUB_US);
    assert.deepEqual(us.payload, { routedBy: 'region', region: 'us' });

    const eu = await registerDevice(server, 'wasm-route-1', key, { region: 'eu' });
    assert.equal(eu.assignedHub, HUB_EU, 're-registering with another payload moves the device');
    assert.deepEqual(eu.payload, { routedBy: 'region', region: 'eu' });

    const none = await registrationFailure(server, 'wasm-route-1', key, { model: 'pump' });
    assert.equal(none.errorCode, 400241);
    assert.equal(
      none.errorMessage,
      'Custom allocation policy rejected the device: payload.region is required (a string such as "eu")',
    );
    const unserved = await registrationFailure(server, 'wasm-route-1', key, { region: 'apac' });
    assert.equal(unserved.errorCode, 400241);
    assert.equal(
      unserved.errorMessage,
      "Custom allocation policy rejected the device: no linked hub serves region 'apac'",
    );

    const record = (await h.callback((done) => service.getDeviceRegistrationState('wasm-route-1', done))).result;
    assert.equal(record.status, 'failed', 'the record holds the last outcome');
    assert.equal(record.errorCode, 400241);
  });

  test("tenant-prefix: registration-ID prefixes pick tenants' hubs; unknown prefixes are rejected", async () => {
    const groupKey = await enrollCustom({
      enrollmentGroupId: 'wasm-tenants',
      policyName: 'tenant-prefix',
      iotHubs: [ACME, GLOBEX, HUB_EU],
    });
    const deviceKey = (id) => h.deriveDeviceKey(groupKey, id);
    const acme = await registerDevice(server, 'acme-boiler-1', deviceKey('acme-boiler-1'), { model: 'boiler' });
    assert.equal(acme.status, 'assigned');
    assert.equal(acme.assignedHub, ACME);
    assert.equal(acme.deviceId, 'acme-boiler-1');
    assert.equal(acme.payload, undefined, 'this policy answers no payload');
    const globex = await registerDevice(server, 'Globex-7', deviceKey('Globex-7'), { model: 'fan' });
    assert.equal(globex.assignedHub, GLOBEX, 'prefixes match in any case');
    assert.equal(globex.payload, undefined);

    const rejected = await registrationFailure(server, 'initech-1', deviceKey('initech-1'), { model: 'printer' });
    assert.equal(rejected.errorCode, 400241);
    assert.equal(
      rejected.errorMessage,
      "Custom allocation policy rejected the device: registration ID 'initech-1' belongs to no known tenant",
    );

    // The initial twin it sets (tags and desired properties per tenant), as the dry run shows it.
    const dry = await h.request('POST', `/policies/tenant-prefix/dryRun?${API}`, {
      headers: auth(),
      body: {
        enrollmentGroup: { enrollmentGroupId: 'wasm-tenants', attestation: { type: 'symmetricKey' } },
        deviceRuntimeContext: { registrationId: 'globex-9', payload: { model: 'fan' } },
        linkedHubs: [ACME, GLOBEX],
      },
    });
    assert.equal(dry.status, 200, JSON.stringify(dry.body));
    assert.equal(dry.body.status, 'assigned');
    assert.equal(dry.body.allocation.iotHubHostName, GLOBEX);
    assert.deepEqual(dry.body.allocation.initialTwin, {
      tags: { tenant: 'globex' },
      properties: { desired: { telemetryIntervalSecs: 300 } },
    });
    assert.ok(dry.body.trace.fuelConsumed > 0 && dry.body.trace.fuelConsumed < dry.body.trace.fuelLimit);
  });

  test('weighted-capacity: a stable weighted pick by hub capacity, with the payload echoed', async () => {
    const hubs = [LARGE, MID, SMALL];
    const groupKey = await enrollCustom({
      enrollmentGroupId: 'wasm-weighted',
      policyName: 'weighted-capacity',
      iotHubs: hubs,
    });
    const seen = new Set();
    for (let i = 1; i <= 6; i++) {
      const id = `meter-${i}`;
      const payload = { serial: i, site: 'plant-2' };
      const expected = weightedPick(id, hubs);
      const result = await registerDevice(server, id, h.deriveDeviceKey(groupKey, id), payload);
      assert.equal(result.status, 'assigned');
      assert.equal(result.assignedHub, expected.hub, `${id} lands where the policy's hash puts it`);
      assert.deepEqual(result.payload, { echo: payload, hub: expected.hub, weight: expected.weight, totalWeight: 8 });
      seen.add(result.assignedHub);
      if (i === 1) {
        const again = await registerDevice(server, id, h.deriveDeviceKey(groupKey, id));
        assert.equal(again.assignedHub, result.assignedHub, 'the same device lands on the same hub');
        assert.deepEqual(again.payload.echo, null, 'no payload sent, null echoed');
      }
    }
    assert.ok(seen.size >= 2, `devices spread over hubs: ${[...seen]}`);
  });

  test('a hostile policy (infinite loop) fails only its own registration while another device registers', async () => {
    const put = await upload('spin', infiniteLoopModule());
    assert.equal(put.status, 200, JSON.stringify(put.body));
    const spinKey = await enrollCustom({ registrationId: 'wasm-spin-1', policyName: 'spin' });
    const goodKey = await enrollCustom({
      registrationId: 'wasm-good-1',
      policyName: 'route-by-payload',
      iotHubs: [HUB_EU, HUB_US],
    });

    const [spin, good] = await Promise.allSettled([
      registerDevice(server, 'wasm-spin-1', spinKey, { region: 'eu' }),
      registerDevice(server, 'wasm-good-1', goodKey, { region: 'eu' }),
    ]);
    assert.equal(good.status, 'fulfilled', good.reason && String(good.reason));
    assert.equal(good.value.status, 'assigned');
    assert.equal(good.value.assignedHub, HUB_EU);
    assert.equal(spin.status, 'rejected');
    const state = spin.reason.result.registrationState;
    assert.equal(state.status, 'failed');
    // Fuel normally ends it; under a heavily loaded machine the 200 ms deadline may come first.
    assert.ok([400243, 400244].includes(state.errorCode), JSON.stringify(state));
    assert.match(
      state.errorMessage,
      /^Custom allocation policy (ran out of fuel \(20000000 units\)|exceeded its deadline of 200 ms)$/,
    );

    // The service is still healthy: the same good device registers again, and the hostile policy dry-runs
    // to the same failure.
    const again = await registerDevice(server, 'wasm-good-1', goodKey, { region: 'us' });
    assert.equal(again.assignedHub, HUB_US);
    const dry = await h.request('POST', `/policies/spin/dryRun?${API}`, {
      headers: auth(),
      body: { deviceRuntimeContext: { registrationId: 'wasm-spin-1' }, linkedHubs: [HUB_EU] },
    });
    assert.equal(dry.status, 200);
    assert.equal(dry.body.status, 'failed');
    assert.ok([400243, 400244].includes(dry.body.errorCode));
  });

  test('a deleted policy fails its devices with 400240 until it is uploaded again', async () => {
    const deleted = await h.request('DELETE', `/policies/route-by-payload?${API}`, { headers: auth() });
    assert.equal(deleted.status, 204);
    const key = await h.callback((done) => service.getIndividualEnrollmentAttestationMechanism('wasm-route-1', done));
    const primary = key.result.symmetricKey.primaryKey;
    const gone = await registrationFailure(server, 'wasm-route-1', primary, { region: 'eu' });
    assert.equal(gone.errorCode, 400240);
    assert.equal(gone.errorMessage, "Custom allocation policy 'route-by-payload' is not uploaded to this instance");

    assert.equal((await upload('route-by-payload', example('route_by_payload.wasm'))).status, 200);
    const back = await registerDevice(server, 'wasm-route-1', primary, { region: 'eu' });
    assert.equal(back.assignedHub, HUB_EU, 're-uploading restores the enrollment unchanged');
  });

  test('the webhook signing key is readable with ServiceConfig', async () => {
    const got = await h.request('GET', `/config/webhookSigningKey?${API}`, { headers: auth() });
    assert.equal(got.status, 200, JSON.stringify(got.body));
    assert.ok(Buffer.from(got.body.webhookSigningKey, 'base64').length >= 32);
    const config = await h.request('GET', `/config?${API}`, { headers: auth() });
    assert.equal(config.body.webhookSigningKey, undefined, '/config does not show it');
    assert.equal((await h.request('GET', `/config/webhookSigningKey?${API}`)).status, 401);
  });
});
