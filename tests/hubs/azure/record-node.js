// Drives the official Node service SDK (azure-iothub Registry) against recorder.py; see record.sh.
// Only the socket is redirected (to 127.0.0.1:HUB_PORT, trusting HUB_CA): method, path, headers and body are the
// SDK's own. Patched before the SDK is loaded, in case it keeps a reference to https.request.
const fs = require('fs');
const https = require('https');

const input = require('./inputs.json');
const port = Number(process.env.HUB_PORT);
const ca = fs.readFileSync(process.env.HUB_CA);
const originalRequest = https.request;
https.request = function (options, ...rest) {
  if (options && typeof options === 'object' && options.host === input.hostName) {
    options = { ...options, host: '127.0.0.1', port, servername: input.hostName, ca };
  }
  return originalRequest.call(https, options, ...rest);
};

const { Registry } = require('azure-iothub');

async function main() {
  const registry = Registry.fromConnectionString(
    `HostName=${input.hostName};SharedAccessKeyName=${input.keyName};SharedAccessKey=${input.key}`);
  const operations = [];
  const step = async (name, call) => { operations.push(name); await call(); };
  const sas = { symmetricKey: { primaryKey: input.primaryKey, secondaryKey: input.secondaryKey } };
  await step('createSas', () => registry.create({
    deviceId: input.sasDevice, status: 'enabled', authentication: sas, capabilities: { iotEdge: false } }));
  await step('createSelfSigned', () => registry.create({
    deviceId: input.selfSignedDevice, status: 'enabled',
    authentication: { x509Thumbprint: { primaryThumbprint: input.primaryThumbprint,
      secondaryThumbprint: input.secondaryThumbprint } },
    capabilities: { iotEdge: false } }));
  await step('createCertificateAuthority', () => registry.create({
    deviceId: input.caDevice, status: 'enabled', authentication: { type: 'certificateAuthority' },
    capabilities: { iotEdge: true } }));
  await step('getDevice', () => registry.get(input.sasDevice));
  await step('updateDevice', () => registry.update({
    deviceId: input.sasDevice, status: 'enabled', authentication: sas, capabilities: { iotEdge: false } }));
  await step('getTwin', () => registry.getTwin(input.sasDevice));
  await step('updateTwin', () => registry.updateTwin(input.sasDevice,
    { tags: input.tags, properties: { desired: input.desired } }, input.twinEtag));
  await step('deleteDevice', () => registry.delete(input.sasDevice));
  fs.writeFileSync(process.env.OPERATIONS_OUT, JSON.stringify(operations));
}

main().catch((err) => { console.error(err); process.exit(1); });
