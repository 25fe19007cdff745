"""Drives the official Python service SDK (azure-iot-hub IoTHubRegistryManager) against recorder.py.

Only the socket is redirected (to 127.0.0.1:HUB_PORT; the CA comes from REQUESTS_CA_BUNDLE): method, path,
headers and body are the SDK's own. See record.sh.
"""

import json
import os
import pathlib

import urllib3.util.connection as connection

INPUT = json.loads((pathlib.Path(__file__).parent / "inputs.json").read_text())
PORT = int(os.environ["HUB_PORT"])
_create_connection = connection.create_connection


def _redirect(address, *args, **kwargs):
    if address[0] == INPUT["hostName"]:
        address = ("127.0.0.1", PORT)
    return _create_connection(address, *args, **kwargs)


connection.create_connection = _redirect

from azure.iot.hub import IoTHubRegistryManager  # noqa: E402
from azure.iot.hub.models import Twin, TwinProperties  # noqa: E402


def main():
    registry = IoTHubRegistryManager.from_connection_string(
        f"HostName={INPUT['hostName']};SharedAccessKeyName={INPUT['keyName']};SharedAccessKey={INPUT['key']}"
    )
    operations = []

    def step(name, call):
        operations.append(name)
        return call()

    step("createSas", lambda: registry.create_device_with_sas(
        INPUT["sasDevice"], INPUT["primaryKey"], INPUT["secondaryKey"], "enabled"))
    step("createSelfSigned", lambda: registry.create_device_with_x509(
        INPUT["selfSignedDevice"], INPUT["primaryThumbprint"], INPUT["secondaryThumbprint"], "enabled"))
    step("createCertificateAuthority", lambda: registry.create_device_with_certificate_authority(
        INPUT["caDevice"], "enabled", iot_edge=True))
    device = step("getDevice", lambda: registry.get_device(INPUT["sasDevice"]))
    step("updateDevice", lambda: registry.update_device_with_sas(
        INPUT["sasDevice"], device.etag, INPUT["primaryKey"], INPUT["secondaryKey"], "enabled"))
    step("getTwin", lambda: registry.get_twin(INPUT["sasDevice"]))
    patch = Twin(tags=INPUT["tags"], properties=TwinProperties(desired=INPUT["desired"]))
    step("updateTwin", lambda: registry.update_twin(INPUT["sasDevice"], patch, INPUT["twinEtag"]))
    step("deleteDevice", lambda: registry.delete_device(INPUT["sasDevice"]))
    pathlib.Path(os.environ["OPERATIONS_OUT"]).write_text(json.dumps(operations))


if __name__ == "__main__":
    main()
