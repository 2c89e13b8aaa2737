"""golden's GCE lifecycle calls through google-cloud-compute
(https://pypi.org/project/google-cloud-compute/), Google's official Python
client for Compute Engine, REST transport, unmodified, against golden-sim
gcp: what a user's own scripts do when pointed at the simulator like
LocalStack.

Driven by tests/e2e/gcp_clients.rs, which starts the simulator and checks
its schema-violation log afterwards. Settings come from the environment:
SIM_ENDPOINT (http://127.0.0.1:PORT), SIM_CREDENTIALS (the service-account
key file the simulator issued), SIM_PROJECT, SIM_ZONE. Exits non-zero,
saying which step failed.
"""

import os
import sys
import time
import uuid

import json
import urllib.request

import google.auth.transport.requests
from google.api_core import exceptions
from google.cloud import compute_v1
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account

ENDPOINT = os.environ["SIM_ENDPOINT"]
PROJECT = os.environ["SIM_PROJECT"]
ZONE = os.environ["SIM_ZONE"]
KEY_FILE = os.environ["SIM_CREDENTIALS"]
ADMIN = os.environ["SIM_ADMIN"]
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
OPTIONS = {"api_endpoint": ENDPOINT}
SOURCE_IMAGE = "projects/debian-cloud/global/images/family/debian-12"
MARKER = "GOLDEN-PROVISION rc=0 step=client-lifecycle"


def check(what, ok, detail=""):
    if not ok:
        sys.exit(f"gcp compute lifecycle: {what} failed {detail}")
    print(f"ok: {what}", flush=True)


def step(what, call):
    """`call()`, or exit naming the step and the error."""
    try:
        return call()
    except Exception as e:  # noqa: BLE001 - every failure names its step
        sys.exit(f"gcp compute lifecycle: {what} raised {type(e).__name__}: {e}")


def wait_until(what, call, ok, tries=400):
    for _ in range(tries):
        value = call()
        if ok(value):
            return value
        time.sleep(0.05)
    sys.exit(f"gcp compute lifecycle: {what} never happened")


def main():
    creds = service_account.Credentials.from_service_account_file(KEY_FILE, scopes=SCOPES)
    check("key file names the project", creds.project_id == PROJECT, creds.project_id)

    instances = compute_v1.InstancesClient(credentials=creds, client_options=OPTIONS)
    images = compute_v1.ImagesClient(credentials=creds, client_options=OPTIONS)
    zone_ops = compute_v1.ZoneOperationsClient(credentials=creds, client_options=OPTIONS)
    global_ops = compute_v1.GlobalOperationsClient(credentials=creds, client_options=OPTIONS)

    # Operation.result() polls operations.get through a client of its own. In
    # google-cloud-compute 1.57.0 the poller's ZoneOperationsClient is made
    # from the credentials alone (transports/base.py `_zone_operations_client`)
    # and so calls compute.googleapis.com whatever api_endpoint says: hand it
    # (before any insert binds it) the clients pointed at the simulator (the library itself is unchanged).
    for client, kind, ops in (
        (instances, "zone_operations", zone_ops),
        (images, "global_operations", global_ops),
    ):
        client._transport._extended_operations_services[kind] = ops

    # The OAuth flow through the key file's token_uri (the simulator's /token)
    # as well: an access token, used by a client of its own.
    oauth = creds.with_always_use_jwt_access(False)
    step("token_uri exchange", lambda: oauth.refresh(google.auth.transport.requests.Request()))
    check("access token from token_uri", bool(oauth.token), oauth.token)
    token_images = compute_v1.ImagesClient(
        credentials=user_credentials.Credentials(token=oauth.token), client_options=OPTIONS
    )
    public = step(
        "images.get_from_family (public, OAuth token)",
        lambda: token_images.get_from_family(project="debian-cloud", family="debian-12"),
    )
    check("public debian-12 image", public.status == "READY" and public.family == "debian-12", public)

    # --- Build VM: instances.insert with a boot disk from an image.
    name = "golden-client-vm"
    script = f"#!/bin/bash\necho '{MARKER}' > /dev/ttyS0\npoweroff\n"
    user_data = (
        "#cloud-config\n"
        f"runcmd:\n  - echo '{MARKER} cloud-init' > /dev/ttyS0\n"
        "power_state:\n  mode: poweroff\n"
    )
    instance = compute_v1.Instance(
        name=name,
        machine_type=f"zones/{ZONE}/machineTypes/e2-small",
        labels={"golden-run": "client-1", "golden-expires": "20990101t000000z"},
        disks=[
            compute_v1.AttachedDisk(
                boot=True,
                auto_delete=True,
                initialize_params=compute_v1.AttachedDiskInitializeParams(
                    source_image=SOURCE_IMAGE,
                    disk_size_gb=10,
                    labels={"golden-run": "client-1"},
                ),
            )
        ],
        network_interfaces=[compute_v1.NetworkInterface(network="global/networks/default")],
        metadata=compute_v1.Metadata(
            items=[
                compute_v1.Items(key="startup-script", value=script),
                compute_v1.Items(key="user-data", value=user_data),
            ]
        ),
    )
    insert_id = str(uuid.uuid4())
    op = step(
        "instances.insert",
        lambda: instances.insert(
            request=compute_v1.InsertInstanceRequest(
                project=PROJECT, zone=ZONE, instance_resource=instance, request_id=insert_id
            )
        ),
    )
    check("insert operation named", bool(op.name), op.name)
    # A retry with the same request id is the same operation.
    again = step(
        "instances.insert retried",
        lambda: instances.insert(
            request=compute_v1.InsertInstanceRequest(
                project=PROJECT, zone=ZONE, instance_resource=instance, request_id=insert_id
            )
        ),
    )
    check("retried insert is the first operation", again.name == op.name, f"{again.name} {op.name}")
    # zoneOperations.wait, then get: DONE without error.
    waited = step(
        "zoneOperations.wait",
        lambda: wait_until(
            "zone operation DONE",
            lambda: zone_ops.wait(project=PROJECT, zone=ZONE, operation=op.name),
            lambda o: o.status == compute_v1.Operation.Status.DONE,
            tries=20,
        ),
    )
    check("zone operation DONE", waited.status == compute_v1.Operation.Status.DONE, waited)
    got_op = step(
        "zoneOperations.get", lambda: zone_ops.get(project=PROJECT, zone=ZONE, operation=op.name)
    )
    check(
        "zone operation read back",
        got_op.status == compute_v1.Operation.Status.DONE
        and not got_op.error.errors
        and got_op.operation_type == "insert"
        and got_op.target_link.endswith(f"/instances/{name}"),
        got_op,
    )
    # The ExtendedOperation poller as well (it polls zoneOperations.get).
    step("ExtendedOperation.result", lambda: op.result(timeout=60))
    check("ExtendedOperation done", op.done() and op.exception() is None, op.error_message)

    # Serial port 1, page by page with start/next, while the guest runs and
    # powers off: GCE serves a TERMINATED instance's serial port no more
    # (400 resourceNotReady), as golden reads it before TERMINATED.
    text, start = "", 0
    for _ in range(400):
        out = step(
            "instances.get_serial_port_output",
            lambda: instances.get_serial_port_output(
                request=compute_v1.GetSerialPortOutputInstanceRequest(
                    project=PROJECT, zone=ZONE, instance=name, port=1, start=start
                )
            ),
        )
        check("serial output starts where asked", out.start == start, f"{out.start} {start}")
        text += out.contents
        start = out.next_
        if MARKER in text:
            break
        time.sleep(0.02)
    check("serial port shows the startup-script marker", MARKER in text, text[-2000:])

    vm = wait_until(
        "instance TERMINATED",
        lambda: instances.get(project=PROJECT, zone=ZONE, instance=name),
        lambda i: i.status == "TERMINATED",
    )
    check("instance powered itself off", vm.status == "TERMINATED", vm.status)
    check("instance labels", vm.labels.get("golden-run") == "client-1", vm.labels)
    boot = vm.disks[0]
    check("boot disk attached", boot.boot and boot.auto_delete and bool(boot.source), boot)

    try:
        instances.get_serial_port_output(project=PROJECT, zone=ZONE, instance=name)
        check("TERMINATED serial port refused", False, "it answered")
    except exceptions.BadRequest as e:
        check("TERMINATED serial port refused (400)", e.code == 400, e)

    # --- Image from the boot disk, with a request id.
    image_name = "golden-client-img-v1"
    image_id = str(uuid.uuid4())
    image = compute_v1.Image(
        name=image_name,
        source_disk=boot.source,
        description='{"golden": "candidate"}',
        labels={"golden-state": "candidate", "golden-run": "client-1"},
    )
    img_op = step(
        "images.insert",
        lambda: images.insert(
            request=compute_v1.InsertImageRequest(
                project=PROJECT, image_resource=image, request_id=image_id
            )
        ),
    )
    again = step(
        "images.insert retried",
        lambda: images.insert(
            request=compute_v1.InsertImageRequest(
                project=PROJECT, image_resource=image, request_id=image_id
            )
        ),
    )
    check("retried image insert is the first operation", again.name == img_op.name)
    done = step(
        "globalOperations.wait",
        lambda: wait_until(
            "global operation DONE",
            lambda: global_ops.wait(project=PROJECT, operation=img_op.name),
            lambda o: o.status == compute_v1.Operation.Status.DONE,
            tries=20,
        ),
    )
    check("image operation DONE without error", not done.error.errors, done.error)
    got_op = step("globalOperations.get", lambda: global_ops.get(project=PROJECT, operation=img_op.name))
    check("global operation read back", got_op.status == compute_v1.Operation.Status.DONE, got_op)

    img = step("images.get", lambda: images.get(project=PROJECT, image=image_name))
    check(
        "image READY outside any family",
        img.status == "READY" and not img.family and img.labels.get("golden-state") == "candidate",
        img,
    )
    check("image from the disk", img.source_disk.endswith(boot.source.split("/")[-1]), img.source_disk)

    # --- Publish: patch the family in, then set labels with the fingerprint.
    family = "golden-client-web"
    patch_op = step(
        "images.patch",
        lambda: images.patch(
            request=compute_v1.PatchImageRequest(
                project=PROJECT,
                image=image_name,
                image_resource=compute_v1.Image(name=image_name, family=family),
                request_id=str(uuid.uuid4()),
            )
        ),
    )
    step("images.patch result", lambda: patch_op.result(timeout=60))
    check("patch done", patch_op.exception() is None, patch_op.error_message)
    img = step("images.get after patch", lambda: images.get(project=PROJECT, image=image_name))
    check("image joined the family", img.family == family, img.family)

    stale = img.label_fingerprint
    labels = dict(img.labels)
    labels["golden-state"] = "validated"
    label_op = step(
        "images.set_labels",
        lambda: images.set_labels(
            project=PROJECT,
            resource=image_name,
            global_set_labels_request_resource=compute_v1.GlobalSetLabelsRequest(
                labels=labels, label_fingerprint=stale
            ),
        ),
    )
    step("images.set_labels result", lambda: label_op.result(timeout=60))
    try:
        images.set_labels(
            project=PROJECT,
            resource=image_name,
            global_set_labels_request_resource=compute_v1.GlobalSetLabelsRequest(
                labels={"golden-state": "failed"}, label_fingerprint=stale
            ),
        )
        check("stale fingerprint refused", False, "the call succeeded")
    except exceptions.PreconditionFailed as e:
        check("stale fingerprint refused with 412", e.code == 412, e)
    img = step("images.get after set_labels", lambda: images.get(project=PROJECT, image=image_name))
    check(
        "labels set, fingerprint moved",
        img.labels.get("golden-state") == "validated" and img.label_fingerprint != stale,
        img,
    )

    fam = step(
        "images.get_from_family", lambda: images.get_from_family(project=PROJECT, family=family)
    )
    check("family resolves to the image", fam.name == image_name, fam.name)

    # --- Two more images in the family, then list by label two at a time.
    # (the disk serves one image insert at a time: each is waited for).
    for i in (2, 3):
        extra = compute_v1.Image(
            name=f"golden-client-img-v{i}",
            source_disk=boot.source,
            labels={"golden-state": "validated"},
        )
        o = step(f"images.insert v{i}", lambda: images.insert(project=PROJECT, image_resource=extra))
        step(f"images.insert v{i} result", lambda: o.result(timeout=60))
    names, token, pages = [], "", 0
    while True:
        req = compute_v1.ListImagesRequest(
            project=PROJECT,
            filter='labels.golden-state = "validated"',
            max_results=2,
            page_token=token,
        )
        page = step("images.list page", lambda: images.list(request=req))
        # The pager itself would fetch the next pages; read one raw page.
        first = next(page.pages)
        names += [i.name for i in first.items]
        pages += 1
        token = first.next_page_token
        if not token:
            break
    check(
        "label filter with paging",
        sorted(names) == [f"golden-client-img-v{i}" for i in (1, 2, 3)] and pages == 2,
        f"{names} in {pages} pages",
    )
    # The pager the library hands out walks every page by itself.
    walked = [
        i.name
        for i in step(
            "images.list pager",
            lambda: list(
                images.list(
                    request=compute_v1.ListImagesRequest(
                        project=PROJECT, filter='labels.golden-state = "validated"', max_results=1
                    )
                )
            ),
        )
    ]
    check("pager walked three pages", len(walked) == 3, walked)

    # A failed image operation: DONE with error.errors[], which the poller
    # raises as the HTTP error its httpErrorStatusCode names.
    fault = {
        "kind": "operation",
        "operation_type": "insert",
        "target": "global/images/",
        "code": "QUOTA_EXCEEDED",
        "message": "Quota 'IMAGES' exceeded. Limit: 3.0 globally.",
        "times": 1,
    }
    urllib.request.urlopen(
        urllib.request.Request(f"{ADMIN}/faults", data=json.dumps(fault).encode(), method="POST")
    ).read()
    failing = step(
        "images.insert (quota fault)",
        lambda: images.insert(
            project=PROJECT,
            image_resource=compute_v1.Image(name="golden-client-img-v4", source_disk=boot.source),
        ),
    )
    try:
        failing.result(timeout=60)
        check("failed operation raised", False, "result() returned")
    except exceptions.Forbidden as e:
        check(
            "failed operation raised 403 with GCE's code",
            "QUOTA_EXCEEDED" in str(e.errors) or "Quota" in e.message,
            f"{e!r} {e.errors}",
        )
    try:
        images.get(project=PROJECT, image="golden-client-img-v4")
        check("failed image left nothing", False, "it exists")
    except exceptions.NotFound:
        check("failed image left nothing (404)", True)

    # --- Clean up: the instance (its disk auto-deletes), then the images.
    del_op = step(
        "instances.delete",
        lambda: instances.delete(
            request=compute_v1.DeleteInstanceRequest(
                project=PROJECT, zone=ZONE, instance=name, request_id=str(uuid.uuid4())
            )
        ),
    )
    step("instances.delete result", lambda: del_op.result(timeout=60))
    try:
        instances.get(project=PROJECT, zone=ZONE, instance=name)
        check("instance gone", False, "still there")
    except exceptions.NotFound:
        check("instance gone (404)", True)
    for i in (1, 2, 3):
        d = step(
            "images.delete",
            lambda: images.delete(
                request=compute_v1.DeleteImageRequest(
                    project=PROJECT, image=f"golden-client-img-v{i}", request_id=str(uuid.uuid4())
                )
            ),
        )
        step("images.delete result", lambda: d.result(timeout=60))
    try:
        images.get_from_family(project=PROJECT, family=family)
        check("family empty", False, "still resolves")
    except exceptions.NotFound:
        check("family empty (404)", True)
    print("gcp compute lifecycle: done", flush=True)


if __name__ == "__main__":
    main()
