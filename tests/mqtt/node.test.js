// The official Node.js provisioning device client over its MQTT transport (azure-iot-provisioning-device-mqtt,
// unmodified) against the running `dps serve --mqtt-listen 127.0.0.1:8883` that run.sh started. The transport
// always connects to mqtts://{host}:8883 and signs with skn=registration; run.sh sets NODE_EXTRA_CA_CERTS to the
// server's CA.
'use strict';

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const dns = require('node:dns');
const https = require('node:https');
const { test } = require('node:test');

const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Mqtt } = require('azure-iot-provisioning-device-mqtt');
const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');

dns.setDefaultResultOrder('ipv4first');
const { ID_SCOPE, CONNECTION_STRING, HTTPS_PORT, HUB_A, HUB_B } = process.env;

function serviceToken() {
  const parts = Object.fromEntries(CONNECTION_STRING.split(';').map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)]));
  const se = Math.floor(Date.now() / 1000) + 3600;
  const sr = encodeURIComponent(parts.HostName);
  const sig = crypto.createHmac('sha256', Buffer.from(parts.SharedAccessKey, 'base64')).update(`${sr}\n${se}`).digest('base64');
  return `SharedAccessSignature sr=${sr}&sig=${encodeURIComponent(sig)}&se=${se}&skn=${parts.SharedAccessKeyName}`;
}

function service(method, path, body) {
  const payload = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = https.request(
      { method, host: '127.0.0.1', port: Number(HTTPS_PORT), servername: 'localhost', path: `${path}?api-version=2021-10-01`,
        headers: { Host: 'localhost', Authorization: serviceToken(), 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) } },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, body: JSON.parse(Buffer.concat(chunks).toString() || 'null') }));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

const newKey = () => crypto.randomBytes(32).toString('base64');

function register(registrationId, key, payload) {
  const client = ProvisioningDeviceClient.create('localhost', ID_SCOPE, new Mqtt(), new SymmetricKeySecurityClient(registrationId, key));
  if (payload) client.setProvisioningPayload(payload);
  return new Promise((resolve, reject) => client.register((err, result) => (err ? reject(err) : resolve(result))));
}

test('an individual enrollment registers over MQTT', async () => {
  const key = newKey();
  const put = await service('PUT', '/enrollments/node-mqtt-1', {
    registrationId: 'node-mqtt-1', attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: key } },
  });
  assert.equal(put.status, 200);
  const result = await register('node-mqtt-1', key, { model: 'valve' });
  assert.equal(result.status, 'assigned');
  assert.equal(result.deviceId, 'node-mqtt-1');
  assert.ok([HUB_A, HUB_B].includes(result.assignedHub), result.assignedHub);
});

test('a group device registers over MQTT with its derived key', async () => {
  const groupKey = newKey();
  const put = await service('PUT', '/enrollmentGroups/node-mqtt-group', {
    enrollmentGroupId: 'node-mqtt-group', attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: groupKey } },
  });
  assert.equal(put.status, 200);
  const id = 'node-mqtt-group-dev';
  const deviceKey = crypto.createHmac('sha256', Buffer.from(groupKey, 'base64')).update(id).digest('base64');
  const result = await register(id, deviceKey);
  assert.equal(result.status, 'assigned');
  assert.equal(result.registrationId, id);
});

test('a wrong key is refused over MQTT', async () => {
  const put = await service('PUT', '/enrollments/node-mqtt-wrong', {
    registrationId: 'node-mqtt-wrong', attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: newKey() } },
  });
  assert.equal(put.status, 200);
  await assert.rejects(register('node-mqtt-wrong', newKey()), (err) => {
    // The transport maps the response topic's status 401 to UnauthorizedError; the body is the HTTPS one.
    assert.equal(err.constructor.name, 'UnauthorizedError');
    assert.equal(err.result.errorCode, 401002);
    return true;
  });
});
