// End-to-end X.509 attestation: the official Azure IoT Node.js SDKs (service client for enrollments, device client
// over HTTP with azure-iot-security-x509) against the real `dps` binary, with certificates made by openssl here:
// a self-signed individual certificate, a CA-signed group chain (leaf + intermediate), and a verified-CA group.
'use strict';

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { after, before, describe, test } = require('node:test');

const { ProvisioningServiceClient } = require('azure-iot-provisioning-service');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Http: DeviceHttp } = require('azure-iot-provisioning-device-http');
const { X509Security } = require('azure-iot-security-x509');

const h = require('./harness');

const API = 'api-version=2021-10-01';
const HUB = 'hub-x509.example.net';

function openssl(args) {
  const run = spawnSync('openssl', args, { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${run.stderr}`);
  return run.stdout;
}

/**
 * A certificate made with openssl in `dir`: a fresh P-256 (or RSA-2048) key, subject CN `cn`, signed by `issuer`
 * (else self-signed); a CA when `ca`, else a client-authentication end entity. Returns {cert, key} PEM text and paths.
 */
function makeCert(dir, cn, { issuer, ca = false, rsa = false } = {}) {
  const base = path.join(dir, `${cn}-${crypto.randomBytes(4).toString('hex')}`);
  const [key, csr, cert, ext] = ['key.pem', 'csr.pem', 'cert.pem', 'ext.cnf'].map((s) => `${base}.${s}`);
  openssl(rsa ? ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', key]
    : ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key]);
  openssl(['req', '-new', '-key', key, '-subj', `/CN=${cn}/O=dps e2e`, '-out', csr]);
  fs.writeFileSync(ext, ca
    ? 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign,digitalSignature\nsubjectKeyIdentifier=hash\n'
    : 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n');
  const signer = issuer ? ['-CA', issuer.certPath, '-CAkey', issuer.keyPath] : ['-signkey', key];
  openssl(['x509', '-req', '-in', csr, ...signer, '-days', '30', '-set_serial',
    `0x${crypto.randomBytes(8).toString('hex')}`, '-extfile', ext, '-out', cert]);
  return { cert: fs.readFileSync(cert, 'utf8'), key: fs.readFileSync(key, 'utf8'), certPath: cert, keyPath: key };
}

const sha1Of = (pem) => new crypto.X509Certificate(pem).fingerprint.replace(/:/g, '');

/** Register with the SDK's HTTP transport presenting `certPem` (leaf first, chain after it) and `keyPem`. */
function registerX509(server, registrationId, certPem, keyPem) {
  const security = new X509Security(registrationId, { cert: certPem, key: keyPem });
  const client = ProvisioningDeviceClient.create('localhost', server.info.idScope, new DeviceHttp(), security);
  return new Promise((resolve, reject) => client.register((err, result) => (err ? reject(err) : resolve(result))));
}

describe('X.509 devices with the Azure IoT Node.js SDKs', () => {
  let suite;
  let server;
  let service;
  let connectionString;
  let dir;

  before(async () => {
    suite = await h.startSuite((dps, dataDir) => {
      dir = fs.mkdtempSync(path.join(dataDir, '..', 'x509-'));
      dps(['hub', 'link', '--instance', 'default', '--host', HUB]);
    });
    server = suite.server;
    connectionString = server.info.connectionString;
    service = ProvisioningServiceClient.fromConnectionString(connectionString);
  });

  after(async () => {
    if (suite) await suite.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('a self-signed individual certificate: enrolled with the service client, provisioned over HTTPS', async () => {
    const device = makeCert(dir, 'x509-self-01');
    await h.callback((done) => service.createOrUpdateIndividualEnrollment({
      registrationId: 'x509-self-01',
      attestation: { type: 'x509', x509: { clientCertificates: { primary: { certificate: device.cert } } } },
    }, done));
    const { result: got } = await h.callback((done) => service.getIndividualEnrollment('x509-self-01', done));
    const info = got.attestation.x509.clientCertificates.primary.info;
    assert.equal(info.sha1Thumbprint, sha1Of(device.cert));
    assert.match(info.subjectName, /CN=x509-self-01/);
    assert.equal(info.version, 3);

    const result = await registerX509(server, 'x509-self-01', device.cert, device.key);
    assert.equal(result.status, 'assigned');
    assert.equal(result.assignedHub, HUB);
    assert.equal(result.deviceId, 'x509-self-01');
    assert.equal(result.x509.certificateInfo.sha1Thumbprint, sha1Of(device.cert));

    // Update as the SDK does (read, change, write back with the etag): a secondary certificate for rollover.
    const rollover = makeCert(dir, 'x509-self-01');
    got.attestation.x509.clientCertificates.secondary = { certificate: rollover.cert };
    got.provisioningStatus = 'enabled';
    const { result: updated } = await h.callback((done) => service.createOrUpdateIndividualEnrollment(got, done));
    assert.equal(updated.attestation.x509.clientCertificates.secondary.info.sha1Thumbprint, sha1Of(rollover.cert));
    assert.notEqual(updated.etag, got.etag);
    const second = await registerX509(server, 'x509-self-01', rollover.cert, rollover.key);
    assert.equal(second.status, 'assigned', 'the secondary certificate admits the device too');

    // The query the service client pages through returns the X.509 enrollment with its info.
    const query = service.createIndividualEnrollmentQuery({ query: '*' }, 10);
    const { result: page } = await h.callback((done) => query.next(done));
    const listed = page.find((e) => e.registrationId === 'x509-self-01');
    assert.equal(listed.attestation.type, 'x509');
    assert.equal(listed.attestation.x509.clientCertificates.primary.info.sha1Thumbprint, sha1Of(device.cert));

    // Another key pair with the same CN is not the enrolled device.
    const impostor = makeCert(dir, 'x509-self-01');
    await assert.rejects(registerX509(server, 'x509-self-01', impostor.cert, impostor.key),
      (err) => err.response && err.response.statusCode === 401);
  });

  test('a signing-certificate group admits a leaf presented with its intermediate (RSA root, P-256 below)', async () => {
    const root = makeCert(dir, 'e2e-root', { ca: true, rsa: true });
    const inter = makeCert(dir, 'e2e-inter', { ca: true, issuer: root });
    await h.callback((done) => service.createOrUpdateEnrollmentGroup({
      enrollmentGroupId: 'x509-chain-group',
      attestation: { type: 'x509', x509: { signingCertificates: { primary: { certificate: root.cert } } } },
    }, done));
    const { result: group } = await h.callback((done) => service.getEnrollmentGroup('x509-chain-group', done));
    assert.equal(group.attestation.x509.signingCertificates.primary.info.sha1Thumbprint, sha1Of(root.cert));

    const leaf = makeCert(dir, 'x509-chain-dev', { issuer: inter });
    const result = await registerX509(server, 'x509-chain-dev', leaf.cert + inter.cert, leaf.key);
    assert.equal(result.status, 'assigned');
    assert.equal(result.x509.enrollmentGroupId, 'x509-chain-group');
    assert.equal(result.x509.signingCertificateInfo.sha1Thumbprint, sha1Of(root.cert));

    // Without the intermediate the chain does not reach the group's root; a stranger's chain never does.
    const alone = makeCert(dir, 'x509-alone', { issuer: inter });
    await assert.rejects(registerX509(server, 'x509-alone', alone.cert, alone.key),
      (err) => err.response && err.response.statusCode === 401);
    const stranger = makeCert(dir, 'x509-stranger', { issuer: makeCert(dir, 'other-root', { ca: true }) });
    await assert.rejects(registerX509(server, 'x509-stranger', stranger.cert, stranger.key),
      (err) => err.response && err.response.statusCode === 401);
    const { result: records } = await h.callback((done) =>
      service.getDeviceRegistrationState('x509-stranger', (err) => done(null, err && err.response.statusCode)));
    assert.equal(records, 404, 'nothing recorded for a refused device');
  });

  test('a verified CA certificate (proof of possession) admits the devices of its group', async () => {
    const auth = { Authorization: h.serviceToken(connectionString) };
    const ca = makeCert(dir, 'fleet-ca', { ca: true });
    const up = await h.request('PUT', `/config/certificates/fleet?${API}`, { headers: auth, body: { certificate: ca.cert } });
    assert.equal(up.status, 200, JSON.stringify(up.body));
    assert.equal(up.body.isVerified, false);
    const code = up.body.verificationCode;

    await h.callback((done) => service.createOrUpdateEnrollmentGroup({
      enrollmentGroupId: 'x509-ca-group',
      attestation: { type: 'x509', x509: { caReferences: { primary: 'fleet' } } },
    }, done));
    const leaf = makeCert(dir, 'x509-fleet-01', { issuer: ca });
    await assert.rejects(registerX509(server, 'x509-fleet-01', leaf.cert, leaf.key),
      (err) => err.response && err.response.statusCode === 401, 'an unverified CA admits nobody');

    const proof = makeCert(dir, code, { issuer: ca });
    const verified = await h.request('POST', `/config/certificates/fleet/verify?${API}`,
      { headers: auth, body: { certificate: proof.cert } });
    assert.equal(verified.status, 200, JSON.stringify(verified.body));
    assert.equal(verified.body.isVerified, true);

    const result = await registerX509(server, 'x509-fleet-01', leaf.cert, leaf.key);
    assert.equal(result.status, 'assigned');
    assert.equal(result.x509.enrollmentGroupId, 'x509-ca-group');

    const refused = await h.request('DELETE', `/config/certificates/fleet?${API}`, { headers: auth });
    assert.equal(refused.status, 409);
    assert.match(refused.body.message, /x509-ca-group/);
  });
});
