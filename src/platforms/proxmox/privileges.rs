//! What golden's API token needs for each PVE call it makes, in the words of
//! PVE's privileges and ACL paths. PVE's 403 names the missing privilege only
//! for a single check ("Permission check failed (/vms/100, VM.Clone)"); a
//! compound or handler check answers a bare "Permission check failed"
//! (pve-access-control RPCEnvironment `exec_api2_perm_check`, qemu-server
//! `create_vm`), so a refused call's error adds what the call needs.
//!
//! The same facts are the privilege table in `docs/index.md`; the
//! permission E2E tests hold both to the simulator's model of PVE.

/// Method, path pattern (`*` is one segment) and what the call needs, with
/// `{1}`, `{2}`, ... standing for the pattern's wildcards in order.
const NEEDS: &[(&str, &str, &str)] = &[
    (
        "POST",
        "/nodes/*/qemu/*/clone",
        "VM.Clone on /vms/{2}, VM.Allocate on the new VM's /vms/<id>, \
         Datastore.AllocateSpace on the target /storage/<storage>, and SDN.Use on \
         /sdn/zones/localnetwork/<bridge> for the source's bridges",
    ),
    (
        "POST",
        "/nodes/*/qemu",
        "VM.Allocate, VM.Config.CPU, VM.Config.Memory, VM.Config.Network, \
         VM.Config.HWType, VM.Config.Options and VM.Config.Disk on the new VM's \
         /vms/<id>, Datastore.AllocateSpace on /storage/<storage>, Datastore.Audit on \
         /storage/<import_storage> (to import the download) and SDN.Use on \
         /sdn/zones/localnetwork/vmbr0",
    ),
    (
        "PUT",
        "/nodes/*/qemu/*/config",
        "VM.Config.Options (name, tags, description, agent, protection), \
         VM.Config.Cloudinit or VM.Config.Network (ipconfig0, ciuser, sshkeys, ciupgrade) \
         and, to add a cloud-init drive, VM.Config.Cloudinit and VM.Config.CDROM on /vms/{2}",
    ),
    ("GET", "/nodes/*/qemu/*/config", "VM.Audit on /vms/{2}"),
    (
        "GET",
        "/nodes/*/qemu/*/status/current",
        "VM.Audit on /vms/{2}",
    ),
    (
        "POST",
        "/nodes/*/qemu/*/status/*",
        "VM.PowerMgmt on /vms/{2}",
    ),
    (
        "POST",
        "/nodes/*/qemu/*/template",
        "VM.Allocate on /vms/{2}",
    ),
    ("DELETE", "/nodes/*/qemu/*", "VM.Allocate on /vms/{2}"),
    (
        "POST",
        "/nodes/*/qemu/*/agent/exec",
        "VM.GuestAgent.Unrestricted on /vms/{2}",
    ),
    (
        "GET",
        "/nodes/*/qemu/*/agent/exec-status",
        "VM.GuestAgent.Unrestricted on /vms/{2}",
    ),
    (
        "POST",
        "/nodes/*/qemu/*/agent/file-write",
        "VM.GuestAgent.Unrestricted (or VM.GuestAgent.FileWrite) on /vms/{2}",
    ),
    (
        "POST",
        "/nodes/*/qemu/*/agent/ping",
        "VM.GuestAgent.Unrestricted (or VM.GuestAgent.Audit) on /vms/{2}",
    ),
    (
        "GET",
        "/nodes/*/qemu/*/agent/network-get-interfaces",
        "VM.GuestAgent.Unrestricted (or VM.GuestAgent.Audit) on /vms/{2}",
    ),
    (
        "GET",
        "/nodes/*/storage/*/content",
        "Datastore.Audit on /storage/{2}",
    ),
    (
        "POST",
        "/nodes/*/storage/*/download-url",
        "Datastore.AllocateTemplate on /storage/{2} and Sys.AccessNetwork on /nodes/{1} \
         (or, on PVE releases without Sys.AccessNetwork, Sys.Audit and Sys.Modify on /)",
    ),
];

/// What a call needs, when golden makes such a call.
pub fn needed_for(method: &str, path: &str) -> Option<String> {
    let path = path.split('?').next().unwrap_or(path);
    NEEDS.iter().find_map(|(m, pattern, needs)| {
        if *m != method {
            return None;
        }
        let wild = matches(pattern, path)?;
        Some(
            wild.iter()
                .enumerate()
                .fold((*needs).to_owned(), |text, (i, value)| {
                    text.replace(&format!("{{{}}}", i + 1), value)
                }),
        )
    })
}

/// The values of `pattern`'s wildcards in `path`, when it matches.
fn matches(pattern: &str, path: &str) -> Option<Vec<String>> {
    let p: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
    let s: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if p.len() != s.len() {
        return None;
    }
    let mut wild = Vec::new();
    for (want, got) in p.iter().zip(&s) {
        match *want {
            "*" => wild.push((*got).to_owned()),
            w if w == *got => {}
            _ => return None,
        }
    }
    Some(wild)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_call_says_what_it_needs_with_its_own_paths() {
        assert_eq!(
            needed_for("POST", "/nodes/pve/storage/local/download-url").unwrap(),
            "Datastore.AllocateTemplate on /storage/local and Sys.AccessNetwork on /nodes/pve \
             (or, on PVE releases without Sys.AccessNetwork, Sys.Audit and Sys.Modify on /)"
        );
        assert!(needed_for("POST", "/nodes/pve/qemu/9000/clone")
            .unwrap()
            .starts_with("VM.Clone on /vms/9000,"));
        assert_eq!(
            needed_for("DELETE", "/nodes/pve/qemu/901").unwrap(),
            "VM.Allocate on /vms/901"
        );
        assert!(needed_for("POST", "/nodes/pve/qemu")
            .unwrap()
            .contains("VM.Allocate"));
        assert_eq!(needed_for("GET", "/cluster/resources"), None);
        assert_eq!(needed_for("POST", "/nodes/pve/qemu/1/config"), None);
    }
}
