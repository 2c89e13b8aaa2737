"""golden's DigitalOcean lifecycle calls through pydo
(https://pypi.org/project/pydo/), DigitalOcean's official Python client,
unmodified, against golden-sim: what a user's own scripts do when pointed at
the simulator like LocalStack.

Driven by tests/e2e/digitalocean_clients.rs, which starts the simulator and
checks its schema-violation log afterwards. Settings come from the
environment: SIM_ENDPOINT (http://127.0.0.1:PORT), SIM_TOKEN, SIM_PUBKEY (an
OpenSSH public key line). Exits non-zero, saying which step failed.
"""

import os
import sys
import time

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from pydo import Client


def check(what, ok, detail=""):
    if not ok:
        sys.exit(f"pydo lifecycle: {what} failed {detail}")
    print(f"ok: {what}", flush=True)


def wait_action(client, action_id):
    for _ in range(200):
        action = client.actions.get(action_id)["action"]
        if action["status"] != "in-progress":
            return action
        time.sleep(0.05)
    sys.exit(f"pydo lifecycle: action {action_id} never ended")


def wait_status(client, droplet_id, status):
    for _ in range(200):
        droplet = client.droplets.get(droplet_id)["droplet"]
        if droplet["status"] == status:
            return droplet
        time.sleep(0.05)
    sys.exit(f"pydo lifecycle: droplet {droplet_id} never became {status}")


def not_found(call):
    """Whether `call` met DO's 404: raised, or returned as the error body."""
    try:
        body = call()
    except ResourceNotFoundError:
        return True
    return isinstance(body, dict) and body.get("id") == "not_found" and "message" in body


def all_images(client, tag):
    """Every private image with `tag`, page by page (pydo pages by number)."""
    images, page = [], 1
    while True:
        resp = client.images.list(private=True, tag_name=tag, per_page=2, page=page)
        images += resp["images"]
        pages = resp.get("links", {}).get("pages", {})
        if "next" not in pages:
            return images, resp["meta"]["total"]
        check("next page link is absolute", pages["next"].startswith(os.environ["SIM_ENDPOINT"]), pages)
        page += 1


def main():
    client = Client(token=os.environ["SIM_TOKEN"], endpoint=os.environ["SIM_ENDPOINT"])
    run_tag = "golden-run:pydo-1"

    key = client.ssh_keys.create({"name": "golden-pydo", "public_key": os.environ["SIM_PUBKEY"]})["ssh_key"]
    check("ssh key created", key["fingerprint"].count(":") == 15, key)

    user_data = '#cloud-config\n{"runcmd": ["echo built > /etc/built"], "power_state": {"mode": "poweroff"}}\n'
    created = client.droplets.create(
        {
            "name": "golden-build-pydo",
            "region": "nyc3",
            "size": "s-1vcpu-1gb",
            "image": "debian-12-x64",
            "ssh_keys": [key["id"]],
            "tags": [run_tag],
            "user_data": user_data,
        }
    )
    droplet_id = created["droplet"]["id"]
    create_action = created["links"]["actions"][0]["id"]
    check("create action completed", wait_action(client, create_action)["status"] == "completed")
    listed = client.droplets.list(tag_name=run_tag)
    check("droplet listed by its run tag", [d["id"] for d in listed["droplets"]] == [droplet_id], listed)

    # cloud-init powers it off; power_off is then a no-op that still completes.
    wait_status(client, droplet_id, "off")
    off = client.droplet_actions.post(droplet_id, {"type": "power_off"})["action"]
    check("power_off completed", wait_action(client, off["id"])["status"] == "completed")

    snap = client.droplet_actions.post(droplet_id, {"type": "snapshot", "name": "golden-candidate"})["action"]
    try:
        client.droplet_actions.post(droplet_id, {"type": "power_on"})
        sys.exit("pydo lifecycle: a second action during the snapshot was accepted")
    except HttpResponseError as e:
        check("second action refused with 422", e.status_code == 422, e)
    check("snapshot completed", wait_action(client, snap["id"])["status"] == "completed")
    snaps = client.droplets.list_snapshots(droplet_id)["snapshots"]
    check("one snapshot", len(snaps) == 1, snaps)
    image_id = snaps[0]["id"]

    for tag in ("golden-family:web", "golden-status:candidate"):
        client.tags.create({"name": tag})
        client.tags.assign_resources(
            tag, {"resources": [{"resource_id": str(image_id), "resource_type": "image"}]}
        )
    # pydo returns the body of a status the description lists (404 here)
    # instead of raising: the error body must be DO's.
    unknown = not_found(
        lambda: client.tags.assign_resources(
            "golden-unknown", {"resources": [{"resource_id": str(image_id), "resource_type": "image"}]}
        )
    )
    check("unknown tag is 404", unknown, unknown)

    images, total = all_images(client, "golden-family:web")
    check("images by tag, paged", total == 4 and len(images) == 4 and image_id in [i["id"] for i in images], images)

    client.tags.unassign_resources(
        "golden-status:candidate", {"resources": [{"resource_id": str(image_id), "resource_type": "image"}]}
    )
    updated = client.images.update(image_id, {"name": "web-20250101-001"})["image"]
    check("image renamed", updated["name"] == "web-20250101-001", updated)
    check("candidate tag gone", updated["tags"] == ["golden-family:web"], updated)

    transfer = client.image_actions.post(image_id, {"type": "transfer", "region": "ams3"})["action"]
    check("transfer completed", wait_action(client, transfer["id"])["status"] == "completed")
    check("image in ams3", "ams3" in client.images.get(image_id)["image"]["regions"])

    client.droplets.destroy(droplet_id)
    client.images.delete(image_id)
    client.ssh_keys.delete(key["id"])
    gone = not_found(lambda: client.droplets.get(droplet_id))
    check("droplet gone", gone, gone)
    print("pydo lifecycle: done", flush=True)


if __name__ == "__main__":
    main()
