"""A VM lifecycle through proxmoxer (https://pypi.org/project/proxmoxer/), an
existing PVE API client, against golden-sim: what a user's own scripts do.

Driven by tests/e2e/proxmox_clients.rs, which starts the simulator and checks
its schema-violation log afterwards. Settings come from the environment:
SIM_ENDPOINT (https://127.0.0.1:PORT), SIM_TOKEN (user@realm!id=secret),
SIM_NODE, SIM_TEMPLATE (the vmid of a template to clone). Exits non-zero,
saying which step failed, when PVE's answers are not what a client expects.
"""

import ipaddress
import os
import sys
import time
from urllib.parse import urlparse

from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException
from proxmoxer.tools import Tasks


def connect():
    url = urlparse(os.environ["SIM_ENDPOINT"])
    user_and_token, secret = os.environ["SIM_TOKEN"].split("=", 1)
    user, token_name = user_and_token.split("!", 1)
    return ProxmoxAPI(
        url.hostname,
        port=url.port,
        user=user,
        token_name=token_name,
        token_value=secret,
        verify_ssl=False,
        backend="https",
    )


def check(what, ok, detail=""):
    if not ok:
        sys.exit(f"proxmoxer lifecycle: {what} failed {detail}")
    print(f"ok: {what}", flush=True)


def wait(pve, upid, what):
    """A task's end, as proxmoxer's own helper polls it."""
    status = Tasks.blocking_status(pve, upid, timeout=60, polling_interval=0.1)
    check(
        f"{what} (task)",
        status is not None and status.get("exitstatus") == "OK",
        repr(status),
    )


def next_id(pve):
    # PVE answers a string here although its schema says integer.
    raw = pve.cluster.nextid.get()
    check("cluster/nextid is a vmid", str(raw).isdigit(), repr(raw))
    return int(raw)


def guest_ips(vm):
    """The guest's addresses from the agent, once it answers."""
    deadline = time.monotonic() + 30
    while True:
        try:
            answer = vm.agent("network-get-interfaces").get()
            break
        except ResourceException as e:
            # 500 "QEMU guest agent is not running" until the guest is up.
            if time.monotonic() > deadline:
                raise
            print(f"agent not up yet: {e}", flush=True)
            time.sleep(0.2)
    ips = []
    for iface in answer.get("result", []):
        for addr in iface.get("ip-addresses", []):
            ips.append(addr["ip-address"])
    return ips


def main():
    pve = connect()
    node = os.environ["SIM_NODE"]
    template = int(os.environ["SIM_TEMPLATE"])

    check("version", "version" in pve.version.get())
    nodes = [n["node"] for n in pve.nodes.get()]
    check("nodes", node in nodes, repr(nodes))
    storages = pve.nodes(node).storage.get()
    check("storage", any("images" in s.get("content", "") for s in storages), repr(storages))
    check("pools", isinstance(pve.pools.get(), list))
    status = pve.nodes(node).storage("local-lvm").status.get()
    check("storage status", status["total"] >= status["used"] and "images" in status["content"], repr(status))
    vms = pve.cluster.resources.get(type="vm")
    check("cluster/resources", any(v["vmid"] == template for v in vms))
    check("template config", pve.nodes(node).qemu(template).config.get().get("template") == 1)

    full_id = next_id(pve)
    qemu = pve.nodes(node).qemu
    wait(pve, qemu(template).clone.post(newid=full_id, name="pmx-full", full=1), "full clone")
    linked_id = next_id(pve)
    check("nextid moved on", linked_id != full_id)
    wait(pve, qemu(template).clone.post(newid=linked_id, name="pmx-linked"), "linked clone")
    # On LVM-thin (local-lvm) a linked clone is a thin snapshot named like
    # any disk of its VM; the storage lists it as that VM's.
    linked_disk = qemu(linked_id).config.get()["scsi0"]
    check("linked clone has its own volume", linked_disk.startswith(f"local-lvm:vm-{linked_id}-disk-0,"), linked_disk)
    volumes = [v["volid"] for v in pve.nodes(node).storage("local-lvm").content.get(vmid=linked_id)]
    check("the storage lists it", f"local-lvm:vm-{linked_id}-disk-0" in volumes, repr(volumes))

    vm = qemu(full_id)
    vm.config.put(memory=2048, cores=2, tags="proxmoxer;Demo", description="made by proxmoxer\n")
    config = vm.config.get()
    check("configure", config["memory"] in ("2048", 2048) and config["cores"] == 2, repr(config))
    check("tags read back as PVE stores them", config["tags"] == "demo;proxmoxer", config["tags"])
    wait(pve, vm.resize.put(disk="scsi0", size="+1G"), "resize")
    disk = vm.config.get()["scsi0"]
    check("resized, in PVE's order", disk == f"local-lvm:vm-{full_id}-disk-0,size=3G", disk)
    vm.cloudinit.put()
    try:
        pve.cluster.ha.resources(full_id).get()
        check("not HA-managed", False, "an HA resource was answered")
    except ResourceException as e:
        check("not HA-managed", e.status_code == 500 and "no such resource" in str(e), str(e))

    wait(pve, vm.status.start.post(), "start")
    ips = guest_ips(vm)
    usable = [ip for ip in ips if not ipaddress.ip_address(ip.split("%")[0]).is_loopback]
    check("agent network-get-interfaces", bool(usable), repr(ips))

    first = (vm.config.get(), vm.status.current.get())
    second = (vm.config.get(), vm.status.current.get())
    check("config reads are stable", first[0] == second[0], f"{first[0]} != {second[0]}")
    check("running", first[1]["status"] == "running" and second[1]["status"] == "running")
    check("status names the VM", second[1]["name"] == "pmx-full", repr(second[1]))

    wait(pve, vm.status.reboot.post(), "reboot")
    check("running after the reboot", vm.status.current.get()["status"] == "running")
    guest_ips(vm)

    wait(pve, vm.status.shutdown.post(timeout=30), "shutdown")
    check("stopped", vm.status.current.get()["status"] == "stopped")
    wait(pve, vm.template.post(), "convert to template")
    check("is a template", vm.config.get().get("template") == 1)

    wait(pve, qemu(linked_id).delete(), "destroy the linked clone")
    wait(pve, vm.delete(), "destroy the template")
    left = [v["vmid"] for v in pve.cluster.resources.get(type="vm")]
    check("both gone", full_id not in left and linked_id not in left, repr(left))
    print("proxmoxer lifecycle: done", flush=True)


if __name__ == "__main__":
    main()
