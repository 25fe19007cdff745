// End-to-end: the official Azure IoT Node.js SDKs (service client, device client over HTTP with symmetric keys)
// against the real `dps` binary over TLS on 127.0.0.1:443. Run with `node --test tests/node/`.
'use strict';

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { EventEmitter, once } = require('node:events');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { after, before, describe, test } = require('node:test');

const { ProvisioningServiceClient } = require('azure-iot-provisioning-service');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Http: DeviceHttp } = require('azure-iot-provisioning-device-http');
const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');

const h = require('./harness');

const HUB_A = 'hub-a.example.net';
const HUB_B = 'hub-b.example.net';
const API = 'api-version=2021-10-01';

const newKey = () => crypto.randomBytes(32).toString('base64');
const symmetricKey = (primaryKey = newKey(), secondaryKey = newKey()) => ({
  type: 'symmetricKey',
  symmetricKey: { primaryKey, secondaryKey },
});

/** A committed fixture of tests/fixtures (comment lines, starting with #, left out). */
const fixture = (name) => fs.readFileSync(path.join(__dirname, '..', 'fixtures', name), 'utf8')
  .split('\n').filter((line) => !line.startsWith('#')).join('').trim();

/** The HTTP status behind an SDK error. */
const statusOf = (err) => err && err.response && err.response.statusCode;

/** Register a device with the SDK's HTTP transport and a symmetric key; resolves with the registration result. */
function registerDevice(server, registrationId, key, payload) {
  const security = new SymmetricKeySecurityClient(registrationId, key);
  const client = ProvisioningDeviceClient.create('localhost', server.info.idScope, new DeviceHttp(), security);
  if (payload) client.setProvisioningPayload(payload);
  return new Promise((resolve, reject) => client.register((err, result) => (err ? reject(err) : resolve(result))));
}

/** Every page of a query, read with the callback form of next() (the promise form drops the continuation). */
async function allPages(query) {
  const pages = [];
  while (query.hasMoreResults) {
    const { result } = await h.callback((done) => query.next(done));
    pages.push(result);
    assert.ok(pages.length <= 20, 'the query must end');
  }
  return pages;
}

/** Five items read two per page: pages of 2, 2 and 1, together `ids` in order. */
function assertTwoPerPage(pages, idOf, ids) {
  assert.deepEqual(pages.map((page) => page.length), [2, 2, 1]);
  assert.deepEqual(pages.flat().map(idOf), ids);
}

/**
 * An Azure-style custom allocation webhook on 127.0.0.1 (plain HTTP: allowed for instances that allow private
 * webhook targets). It assigns `hub`, echoes the device's payload back, and holds each answer for `delayMs`.
 */
async function startWebhook(hub) {
  const hook = { requests: [], delayMs: 0, received: new EventEmitter() };
  hook.server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      hook.requests.push({ headers: req.headers, body });
      hook.received.emit('request', body);
      const answer = {
        iotHubHostName: hub,
        initialTwin: { tags: { allocatedBy: 'webhook' } },
        payload: { echo: body.deviceRuntimeContext.payload || null, linkedHubs: body.linkedHubs },
      };
      setTimeout(() => {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(answer));
      }, hook.delayMs);
    });
  });
  await new Promise((resolve) => hook.server.listen(0, '127.0.0.1', resolve));
  hook.url = `http://127.0.0.1:${hook.server.address().port}/allocate`;
  return hook;
}

describe('dps with the Azure IoT Node.js SDKs', () => {
  let suite;
  let server;
  let service;
  let connectionString;

  before(async () => {
    // One hub through the CLI (operator path, server stopped), the other through the service API below.
    suite = await h.startSuite((dps) => {
      dps(['hub', 'link', '--instance', 'default', '--host', HUB_A, '--location', 'westeurope']);
      return JSON.parse(dps(['instance', 'show', 'default', '--json']));
    });
    const shown = suite.prepared;
    server = suite.server;
    assert.equal(server.info.idScope, shown.idScope);
    connectionString = shown.connectionString;
    assert.equal(server.info.connectionString, connectionString);
    service = ProvisioningServiceClient.fromConnectionString(connectionString);
  });

  let webhook;

  /** An individual enrollment allocated by the webhook (custom allocation). */
  const enrollForWebhook = (registrationId, key) =>
    h.callback((done) =>
      service.createOrUpdateIndividualEnrollment(
        {
          registrationId,
          attestation: symmetricKey(key),
          allocationPolicy: 'custom',
          customAllocationDefinition: { webhookUrl: webhook.url, apiVersion: '2021-10-01' },
        },
        done,
      ),
    );

  after(async () => {
    if (suite) await suite.close();
    if (webhook) webhook.server.close();
  });

  test('links a second hub through the service API configuration extension', async () => {
    const auth = { Authorization: h.serviceToken(connectionString) };
    const put = await h.request('PUT', `/config/linkedHubs/${HUB_B}?${API}`, {
      headers: auth,
      body: { allocationWeight: 2, location: 'eastus' },
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    assert.equal(put.body.hostName, HUB_B);
    const config = await h.request('GET', `/config?${API}`, { headers: auth });
    assert.equal(config.status, 200);
    assert.deepEqual(config.body.linkedHubs.map((hub) => hub.hostName).sort(), [HUB_A, HUB_B]);

    const anonymous = await h.request('GET', `/config?${API}`);
    assert.equal(anonymous.status, 401);
  });

  test('individual enrollment: create, get, update with etag, 412 on a stale etag, delete', async () => {
    const id = 'e2e-individual-1';
    const created = (
      await h.callback((done) =>
        service.createOrUpdateIndividualEnrollment(
          { registrationId: id, deviceId: 'e2e-device-1', attestation: { type: 'symmetricKey' } },
          done,
        ),
      )
    ).result;
    assert.equal(created.registrationId, id);
    assert.equal(created.deviceId, 'e2e-device-1');
    assert.equal(created.provisioningStatus, 'enabled');
    assert.ok(created.etag, 'a created enrollment has an etag');

    // Keys are generated when none are given, and only the attestation mechanism call reveals them.
    const got = (await h.callback((done) => service.getIndividualEnrollment(id, done))).result;
    assert.equal(got.etag, created.etag);
    assert.ok(!got.attestation.symmetricKey || !got.attestation.symmetricKey.primaryKey, 'GET hides keys');
    const mechanism = (await h.callback((done) => service.getIndividualEnrollmentAttestationMechanism(id, done)))
      .result;
    assert.equal(Buffer.from(mechanism.symmetricKey.primaryKey, 'base64').length, 64);

    // The SDK sends the object back whole (read-only fields included) with If-Match: its etag.
    got.initialTwin = { tags: { site: 'lab' }, properties: { desired: { interval: 30 } } };
    const updated = (await h.callback((done) => service.createOrUpdateIndividualEnrollment(got, done))).result;
    assert.notEqual(updated.etag, created.etag, 'an update changes the etag');
    assert.deepEqual(updated.initialTwin.tags, { site: 'lab' });

    const stale = { ...got, etag: created.etag, provisioningStatus: 'disabled' };
    await assert.rejects(
      h.callback((done) => service.createOrUpdateIndividualEnrollment(stale, done)),
      (err) => statusOf(err) === 412,
    );
    await assert.rejects(
      h.callback((done) => service.deleteIndividualEnrollment(id, created.etag, done)),
      (err) => statusOf(err) === 412,
    );
    const unchanged = (await h.callback((done) => service.getIndividualEnrollment(id, done))).result;
    assert.equal(unchanged.provisioningStatus, 'enabled', 'a refused update changes nothing');

    await h.callback((done) => service.deleteIndividualEnrollment(id, updated.etag, done));
    await assert.rejects(
      h.callback((done) => service.getIndividualEnrollment(id, done)),
      (err) => statusOf(err) === 404,
    );
  });

  test('TPM individual enrollment: create, get, attestation mechanism, update with etag, query, delete', async () => {
    const id = 'e2e-tpm-1';
    const ek = fixture('tpm/ek-rsa2048.b64');
    const srk = fixture('tpm/srk-rsa2048.b64');
    const created = (await h.callback((done) => service.createOrUpdateIndividualEnrollment({
      registrationId: id, deviceId: 'e2e-tpm-device', attestation: { type: 'tpm', tpm: { endorsementKey: ek, storageRootKey: srk } },
    }, done))).result;
    assert.equal(created.attestation.type, 'tpm');

    const got = (await h.callback((done) => service.getIndividualEnrollment(id, done))).result;
    assert.equal(got.attestation.tpm.endorsementKey, ek);
    assert.equal(got.deviceId, 'e2e-tpm-device');
    const mechanism = (await h.callback((done) => service.getIndividualEnrollmentAttestationMechanism(id, done))).result;
    assert.equal(mechanism.type, 'tpm');
    assert.equal(mechanism.tpm.endorsementKey, ek);

    // Written back whole, as the SDK does: the EK stays; a stale etag is refused and changes nothing.
    got.provisioningStatus = 'disabled';
    const updated = (await h.callback((done) => service.createOrUpdateIndividualEnrollment(got, done))).result;
    assert.notEqual(updated.etag, created.etag);
    assert.equal(updated.attestation.tpm.endorsementKey, ek);
    await assert.rejects(
      h.callback((done) => service.createOrUpdateIndividualEnrollment({ ...got, etag: created.etag, deviceId: 'x' }, done)),
      (err) => statusOf(err) === 412,
    );
    const listed = (await allPages(service.createIndividualEnrollmentQuery({ query: '*' }, 50))).flat();
    const mine = listed.find((e) => e.registrationId === id);
    assert.equal(mine.provisioningStatus, 'disabled');
    assert.equal(mine.attestation.tpm.endorsementKey, ek);

    // An EK that is not a TPM2B_PUBLIC is refused and stores nothing.
    await assert.rejects(
      h.callback((done) => service.createOrUpdateIndividualEnrollment({
        registrationId: 'e2e-tpm-bad', attestation: { type: 'tpm', tpm: { endorsementKey: Buffer.from('not an EK').toString('base64') } },
      }, done)),
      (err) => statusOf(err) === 400,
    );
    await assert.rejects(h.callback((done) => service.getIndividualEnrollment('e2e-tpm-bad', done)), (err) => statusOf(err) === 404);

    await h.callback((done) => service.deleteIndividualEnrollment(id, updated.etag, done));
    await assert.rejects(
      h.callback((done) => service.getIndividualEnrollmentAttestationMechanism(id, done)),
      (err) => statusOf(err) === 404,
    );
  });

  test('individual enrollments: bulk create, query two per page, bulk delete', async () => {
    const ids = ['e2e-bulk-1', 'e2e-bulk-2', 'e2e-bulk-3', 'e2e-bulk-4', 'e2e-bulk-5'];
    const enrollments = ids.map((registrationId) => ({ registrationId, attestation: symmetricKey() }));
    const created = (
      await h.callback((done) => service.runBulkEnrollmentOperation({ mode: 'create', enrollments }, done))
    ).result;
    assert.equal(created.isSuccessful, true, JSON.stringify(created));

    const again = (
      await h.callback((done) =>
        service.runBulkEnrollmentOperation({ mode: 'create', enrollments: enrollments.slice(0, 1) }, done),
      )
    ).result;
    assert.equal(again.isSuccessful, false, 'creating an existing enrollment is reported');
    assert.equal(again.errors[0].registrationId, ids[0]);

    const pages = await allPages(service.createIndividualEnrollmentQuery({ query: '*' }, 2));
    assertTwoPerPage(pages, (e) => e.registrationId, ids);

    const deleted = (
      await h.callback((done) => service.runBulkEnrollmentOperation({ mode: 'delete', enrollments }, done))
    ).result;
    assert.equal(deleted.isSuccessful, true, JSON.stringify(deleted));
    const empty = await allPages(service.createIndividualEnrollmentQuery({ query: '*' }, 2));
    assert.deepEqual(empty.flat(), []);
  });

  test('enrollment groups: create, get, update with etag, 412, query two per page, delete', async () => {
    const ids = ['e2e-group-1', 'e2e-group-2', 'e2e-group-3', 'e2e-group-4', 'e2e-group-5'];
    const created = [];
    for (const enrollmentGroupId of ids) {
      const { result } = await h.callback((done) =>
        service.createOrUpdateEnrollmentGroup({ enrollmentGroupId, attestation: symmetricKey() }, done),
      );
      assert.equal(result.enrollmentGroupId, enrollmentGroupId);
      assert.ok(result.etag);
      created.push(result);
    }

    const got = (await h.callback((done) => service.getEnrollmentGroup(ids[0], done))).result;
    assert.equal(got.etag, created[0].etag);
    got.provisioningStatus = 'disabled';
    const updated = (await h.callback((done) => service.createOrUpdateEnrollmentGroup(got, done))).result;
    assert.equal(updated.provisioningStatus, 'disabled');
    assert.notEqual(updated.etag, created[0].etag);
    await assert.rejects(
      h.callback((done) => service.createOrUpdateEnrollmentGroup({ ...got, etag: created[0].etag }, done)),
      (err) => statusOf(err) === 412,
    );

    const pages = await allPages(service.createEnrollmentGroupQuery({ query: '*' }, 2));
    assertTwoPerPage(pages, (g) => g.enrollmentGroupId, ids);

    await assert.rejects(
      h.callback((done) => service.deleteEnrollmentGroup(ids[0], created[0].etag, done)),
      (err) => statusOf(err) === 412,
    );
    await h.callback((done) => service.deleteEnrollmentGroup(ids[0], updated.etag, done));
    for (const id of ids.slice(1)) {
      await h.callback((done) => service.deleteEnrollmentGroup(id, done));
    }
    await assert.rejects(
      h.callback((done) => service.getEnrollmentGroup(ids[2], done)),
      (err) => statusOf(err) === 404,
    );
  });

  test('a device with an individual key provisions, and its record can be read and deleted', async () => {
    const registrationId = 'e2e-sensor-ind';
    const key = newKey();
    await h.callback((done) =>
      service.createOrUpdateIndividualEnrollment(
        { registrationId, deviceId: 'sensor-ind', attestation: symmetricKey(key) },
        done,
      ),
    );

    await assert.rejects(registerDevice(server, registrationId, newKey()), 'a wrong key is refused');

    const result = await registerDevice(server, registrationId, key, { firmware: '1.2.3' });
    assert.equal(result.status, 'assigned');
    assert.equal(result.deviceId, 'sensor-ind');
    assert.equal(result.registrationId, registrationId);
    assert.ok([HUB_A, HUB_B].includes(result.assignedHub), `assigned to a linked hub, got ${result.assignedHub}`);

    const record = (await h.callback((done) => service.getDeviceRegistrationState(registrationId, done))).result;
    assert.equal(record.status, 'assigned');
    assert.equal(record.assignedHub, result.assignedHub);
    assert.equal(record.deviceId, 'sensor-ind');
    assert.ok(record.etag);

    // Registering again keeps the device on a linked hub and writes a new version of the record.
    const again = await registerDevice(server, registrationId, key);
    assert.equal(again.status, 'assigned');
    const record2 = (await h.callback((done) => service.getDeviceRegistrationState(registrationId, done))).result;
    assert.notEqual(record2.etag, record.etag);

    await assert.rejects(
      h.callback((done) => service.deleteDeviceRegistrationState(registrationId, record.etag, done)),
      (err) => statusOf(err) === 412,
    );
    await h.callback((done) => service.deleteDeviceRegistrationState(registrationId, record2.etag, done));
    await assert.rejects(
      h.callback((done) => service.getDeviceRegistrationState(registrationId, done)),
      (err) => statusOf(err) === 404,
    );
    await h.callback((done) => service.deleteIndividualEnrollment(registrationId, done));
  });

  test('devices with keys derived from a group key provision through the group', async () => {
    const groupId = 'e2e-sk-group';
    const groupKey = crypto.randomBytes(64).toString('base64');
    await h.callback((done) =>
      service.createOrUpdateEnrollmentGroup({ enrollmentGroupId: groupId, attestation: symmetricKey(groupKey) }, done),
    );

    const devices = ['e2e-group-dev-1', 'e2e-group-dev-2', 'e2e-group-dev-3'];
    for (const registrationId of devices) {
      const result = await registerDevice(server, registrationId, h.deriveDeviceKey(groupKey, registrationId), {
        model: 'thermostat',
      });
      assert.equal(result.status, 'assigned');
      assert.equal(result.deviceId, registrationId, 'group devices take their registration ID as device ID');
      assert.ok([HUB_A, HUB_B].includes(result.assignedHub));
    }
    await assert.rejects(registerDevice(server, 'e2e-group-dev-x', groupKey), 'the group key itself is not a device key');

    const pages = await allPages(service.createEnrollmentGroupDeviceRegistrationStateQuery({ query: '*' }, groupId, 2));
    assert.deepEqual(
      pages
        .flat()
        .map((r) => r.registrationId)
        .sort(),
      devices,
    );

    const record = (await h.callback((done) => service.getDeviceRegistrationState(devices[0], done))).result;
    assert.equal(record.status, 'assigned');
    await h.callback((done) => service.deleteDeviceRegistrationState(devices[0], done));
    await assert.rejects(
      h.callback((done) => service.getDeviceRegistrationState(devices[0], done)),
      (err) => statusOf(err) === 404,
    );
    await h.callback((done) => service.deleteEnrollmentGroup(groupId, done));
  });

  test('custom allocation through a webhook receives the device payload and returns one to the device', async () => {
    webhook = await startWebhook(HUB_B);
    const auth = { Authorization: h.serviceToken(connectionString) };
    const config = await h.request('GET', `/config?${API}`, { headers: auth });
    const put = await h.request('PUT', `/config?${API}`, {
      headers: { ...auth, 'If-Match': config.body.etag },
      body: { ...config.body, allowPrivateWebhookTargets: true },
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));

    const registrationId = 'e2e-custom-1';
    const key = newKey();
    await enrollForWebhook(registrationId, key);
    const result = await registerDevice(server, registrationId, key, { model: 'pump', fw: 7 });
    assert.equal(result.status, 'assigned');
    assert.equal(result.assignedHub, HUB_B, 'the webhook chose the hub');
    assert.deepEqual(result.payload.echo, { model: 'pump', fw: 7 }, 'the device payload reached the webhook');
    assert.deepEqual([...result.payload.linkedHubs].sort(), [HUB_A, HUB_B]);

    const request = webhook.requests.at(-1).body;
    assert.equal(request.deviceRuntimeContext.registrationId, registrationId);
    assert.equal(request.individualEnrollment.registrationId, registrationId);
    assert.deepEqual(request.individualEnrollment.attestation.symmetricKey || {}, {}, 'no secrets sent to webhooks');
  });

  test('SIGTERM lets the registration in flight finish, then the server exits cleanly', async () => {
    const registrationId = 'e2e-custom-inflight';
    const key = newKey();
    await enrollForWebhook(registrationId, key);
    webhook.delayMs = 1500;
    const inFlight = registerDevice(server, registrationId, key);
    await once(webhook.received, 'request');
    const stopped = server.stop('SIGTERM');

    const result = await inFlight;
    assert.equal(result.status, 'assigned', 'the request in flight was answered');
    assert.equal(result.assignedHub, HUB_B);
    const { code, signal } = await stopped;
    assert.equal(signal, null, 'dps handles SIGTERM itself');
    assert.equal(code, 0);
    const messages = server.logs.map((line) => {
      try {
        return JSON.parse(line).message;
      } catch {
        return line;
      }
    });
    assert.ok(messages.includes('stopped'), `logs end with "stopped":\n${server.logs.slice(-5).join('\n')}`);
    await assert.rejects(h.request('GET', `/config?${API}`), 'nothing listens any more');
  });
});
