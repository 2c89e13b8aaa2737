//! PVE's permission model, from pve-access-control 9.1 (`PVE/AccessControl.pm`,
//! `PVE/RPCEnvironment.pm`) and the checks qemu-server, pve-storage and
//! pve-manager make beside it: users and their API tokens (privilege-separated
//! or not), groups, roles (the built-in ones and custom ones), ACL entries on
//! paths with `propagate`, and PVE's 403 "Permission check failed (...)".
//!
//! Every API request is authorised here before its handler runs
//! (`authorize`), lists are filtered the way PVE filters them (`filter`), and
//! `GET /access/permissions` answers what a token may do (`permissions_json`).
//! Not modelled: pools (`/pool/<pool>` ACLs and pool-granted VM and storage
//! privileges), realms, user and token expiry, the datacenter's
//! `user-tag-access` modes other than the default `free`, SDN vnets (every
//! bridge is in zone `localnetwork`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::state::{drive_volid, is_drive_key, Cluster};
use super::ApiError;
use crate::core::spec::Params;

/// The one user that bypasses every check (RPCEnvironment `permissions`:
/// "root can do anything"). Its tokens do not: they are checked like any.
pub const ROOT: &str = "root@pam";

/// Privileges by group and level, as `$privgroups` in PVE/AccessControl.pm:
/// (group, root-only, admin, user, audit).
type PrivGroup = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
);
const PRIVGROUPS: &[PrivGroup] = &[
    (
        "VM",
        &[],
        &[
            "VM.Config.Disk",
            "VM.Config.CPU",
            "VM.Config.Memory",
            "VM.Config.Network",
            "VM.Config.HWType",
            "VM.Config.Options",
            "VM.Allocate",
            "VM.Clone",
            "VM.GuestAgent.Unrestricted",
            "VM.Migrate",
            "VM.Replicate",
            "VM.Snapshot",
            "VM.Snapshot.Rollback",
        ],
        &[
            "VM.Config.CDROM",
            "VM.Config.Cloudinit",
            "VM.Console",
            "VM.Backup",
            "VM.GuestAgent.FileRead",
            "VM.GuestAgent.FileSystemMgmt",
            "VM.GuestAgent.FileWrite",
            "VM.PowerMgmt",
        ],
        &["VM.Audit", "VM.GuestAgent.Audit"],
    ),
    (
        "Sys",
        &[
            "Sys.PowerMgmt",
            "Sys.Modify",
            "Sys.Incoming",
            "Sys.AccessNetwork",
        ],
        &["Sys.Console", "Sys.Syslog"],
        &[],
        &["Sys.Audit"],
    ),
    (
        "Datastore",
        &[],
        &["Datastore.Allocate", "Datastore.AllocateTemplate"],
        &["Datastore.AllocateSpace"],
        &["Datastore.Audit"],
    ),
    (
        "SDN",
        &[],
        &["SDN.Allocate", "SDN.Audit"],
        &["SDN.Use"],
        &["SDN.Audit"],
    ),
    (
        "User",
        &["Realm.Allocate"],
        &["User.Modify", "Group.Allocate", "Realm.AllocateUser"],
        &[],
        &[],
    ),
    (
        "Pool",
        &[],
        &["Pool.Allocate"],
        &["Pool.Audit"],
        &["Pool.Audit"],
    ),
    (
        "Mapping",
        &[],
        &["Mapping.Modify"],
        &["Mapping.Use"],
        &["Mapping.Audit"],
    ),
];

/// Every privilege PVE knows (`$valid_privs`: the groups' plus
/// `Permissions.Modify`).
pub fn valid_privileges() -> &'static BTreeSet<&'static str> {
    static ALL: OnceLock<BTreeSet<&'static str>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut all: BTreeSet<&str> = ["Permissions.Modify"].into();
        for (_, root, admin, user, audit) in PRIVGROUPS {
            all.extend(root.iter().chain(*admin).chain(*user).chain(*audit));
        }
        all
    })
}

/// The built-in roles, as `create_roles` makes them: `PVE<group>Admin`
/// (admin + user + audit), `PVE<group>User` (user + audit, for groups with
/// user privileges), `PVEAuditor`, `PVEAdmin` (every admin, user and audit
/// privilege but `Mapping.Modify`), `PVETemplateUser`, `NoAccess` and
/// `Administrator` (everything).
pub fn builtin_roles() -> &'static BTreeMap<String, BTreeSet<String>> {
    static ROLES: OnceLock<BTreeMap<String, BTreeSet<String>>> = OnceLock::new();
    ROLES.get_or_init(|| {
        let mut roles: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut add = |role: &str, privs: &[&str]| {
            roles
                .entry(role.to_owned())
                .or_default()
                .extend(privs.iter().map(|p| (*p).to_owned()));
        };
        add("NoAccess", &[]);
        add(
            "Administrator",
            &valid_privileges().iter().copied().collect::<Vec<_>>(),
        );
        for (group, _, admin, user, audit) in PRIVGROUPS {
            for set in [admin, user, audit] {
                add(&format!("PVE{group}Admin"), set);
                add("PVEAdmin", set);
            }
            if !user.is_empty() {
                add(&format!("PVE{group}User"), user);
                add(&format!("PVE{group}User"), audit);
            }
            add("PVEAuditor", audit);
        }
        add("PVETemplateUser", &["VM.Clone", "VM.Audit"]);
        if let Some(admin) = roles.get_mut("PVEAdmin") {
            admin.remove("Mapping.Modify");
        }
        roles
    })
}

/// An API token (`user@realm!tokenid`) and its secret.
#[derive(Debug, Clone, Deserialize)]
pub struct Token {
    pub id: String,
    pub secret: String,
    /// Privilege separation: the token's own ACLs, intersected with its
    /// user's privileges. `pveum user token add` defaults to on.
    #[serde(default = "yes")]
    pub privsep: bool,
}

fn yes() -> bool {
    true
}

/// An ACL entry: `role` for one subject on `path` (and below it when
/// `propagate`, which `pveum acl modify` defaults to).
#[derive(Debug, Clone, Deserialize)]
pub struct Acl {
    pub path: String,
    #[serde(flatten)]
    pub subject: Subject,
    pub role: String,
    #[serde(default = "yes")]
    pub propagate: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Subject {
    User(String),
    Token(String),
    Group(String),
}

/// `PUT /_sim/access`: the users, groups, custom roles, tokens and ACL
/// entries the cluster has, replacing earlier ones (the start-up token and
/// `root@pam` stay).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AccessConfig {
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub roles: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub tokens: Vec<Token>,
    #[serde(default)]
    pub acl: Vec<Acl>,
}

/// Privilege -> whether it propagates, as `permissions` returns them.
pub type Privs = BTreeMap<String, bool>;

/// The cluster's users, tokens, roles and ACL.
#[derive(Debug, Clone)]
pub struct Access {
    users: BTreeSet<String>,
    groups: BTreeMap<String, BTreeSet<String>>,
    roles: BTreeMap<String, BTreeSet<String>>,
    tokens: BTreeMap<String, Token>,
    acl: Vec<Acl>,
    start_token: Token,
}

/// Why a check failed: PVE's `raise_perm_exc($what)`, a 403 whose message
/// is "Permission check failed" with `($what)` when the check names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied(pub Option<String>);

impl Denied {
    fn what(what: impl Into<String>) -> Denied {
        Denied(Some(what.into()))
    }
}

impl From<Denied> for ApiError {
    fn from(d: Denied) -> ApiError {
        // pve-common PVE/Exception.pm raise_perm_exc.
        match d.0 {
            Some(what) => ApiError::new(403, format!("Permission check failed ({what})")),
            None => ApiError::new(403, "Permission check failed"),
        }
    }
}

/// The start-up token: `user@realm!tokenid=secret`, not privilege-separated
/// so that `root@pam!...` may do everything root may, as the default
/// `make sim-proxmox` token should.
pub fn parse_token(spec: &str, privsep: bool) -> Option<Token> {
    let (id, secret) = spec.split_once('=')?;
    let (user, name) = id.split_once('!')?;
    (user.contains('@') && !name.is_empty() && !secret.is_empty()).then(|| Token {
        id: id.to_owned(),
        secret: secret.to_owned(),
        privsep,
    })
}

/// PVE/AccessControl.pm normalize_path: one `/` between parts, none at the
/// end, a leading one; `None` for characters an ACL path cannot have.
pub fn normalize_path(path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let norm = format!("/{}", parts.join("/"));
    norm.chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
        .then_some(norm)
}

impl Access {
    pub fn new(start_token: Token) -> Access {
        let mut a = Access {
            users: BTreeSet::new(),
            groups: BTreeMap::new(),
            roles: BTreeMap::new(),
            tokens: BTreeMap::new(),
            acl: Vec::new(),
            start_token,
        };
        a.reset();
        a
    }

    fn reset(&mut self) {
        self.users = [ROOT.to_owned()].into();
        let owner = self.start_token.id.split('!').next().unwrap_or(ROOT);
        self.users.insert(owner.to_owned());
        self.groups.clear();
        self.roles = builtin_roles().clone();
        self.tokens = [(self.start_token.id.clone(), self.start_token.clone())].into();
        self.acl.clear();
    }

    /// Replaces the users, groups, custom roles, tokens and ACL; refuses an
    /// unknown privilege as `pveum role add` does ("invalid privilege 'x'").
    pub fn configure(&mut self, cfg: AccessConfig) -> Result<(), String> {
        for (role, privs) in &cfg.roles {
            if builtin_roles().contains_key(role) {
                return Err(format!("cannot modify special role '{role}'"));
            }
            if let Some(bad) = privs
                .iter()
                .find(|p| !valid_privileges().contains(p.as_str()))
            {
                return Err(format!("invalid privilege '{bad}'"));
            }
        }
        self.reset();
        self.users.extend(cfg.users);
        for (group, members) in cfg.groups {
            self.groups.insert(group, members.into_iter().collect());
        }
        for (role, privs) in cfg.roles {
            self.roles.insert(role, privs.into_iter().collect());
        }
        for t in cfg.tokens {
            self.tokens.insert(t.id.clone(), t);
        }
        for mut acl in cfg.acl {
            acl.path = normalize_path(&acl.path)
                .ok_or_else(|| format!("invalid ACL path '{}'", acl.path))?;
            self.acl.push(acl);
        }
        Ok(())
    }

    /// The token an `Authorization: PVEAPIToken=user@realm!tokenid=secret`
    /// header names, when the secret matches and its user exists.
    pub fn authenticate(&self, header: &str) -> Option<String> {
        let spec = header.trim().strip_prefix("PVEAPIToken=")?;
        let (id, secret) = spec.split_once('=')?;
        let token = self.tokens.get(id)?;
        let user = id.split('!').next()?;
        (token.secret == secret && self.users.contains(user)).then(|| id.to_owned())
    }

    /// RPCEnvironment `permissions`: what `authid` (a user or a token) may do
    /// on `path`.
    pub fn permissions(&self, authid: &str, path: &str) -> Privs {
        if authid == ROOT {
            return self.role_privs(
                &["Administrator".to_owned()]
                    .into_iter()
                    .map(|r| (r, true))
                    .collect(),
            );
        }
        if let Some((user, _)) = authid.split_once('!') {
            let Some(token) = self.tokens.get(authid) else {
                return Privs::new();
            };
            let user_privs = self.permissions(user, path);
            if !token.privsep {
                return user_privs;
            }
            let own = self.compile(authid, path);
            if user == ROOT {
                return own;
            }
            // A privilege-separated token has what both it and its user have.
            return own
                .into_iter()
                .filter_map(|(p, prop)| user_privs.get(&p).map(|up| (p, prop && *up)))
                .collect();
        }
        if !self.users.contains(authid) {
            return Privs::new();
        }
        self.compile(authid, path)
    }

    fn compile(&self, ugid: &str, path: &str) -> Privs {
        let roles = self.roles_on(ugid, path);
        if roles.contains_key("NoAccess") {
            return Privs::new();
        }
        self.role_privs(&roles)
    }

    fn role_privs(&self, roles: &BTreeMap<String, bool>) -> Privs {
        let mut privs = Privs::new();
        for (role, propagate) in roles {
            for p in self.roles.get(role).into_iter().flatten() {
                let e = privs.entry(p.clone()).or_insert(false);
                *e = *e || *propagate;
            }
        }
        privs
    }

    /// PVE/AccessControl.pm `roles`: walk from `/` down to `path`; at each
    /// level the subject's own entries (a token's, or a user's) replace what
    /// was inherited, else its groups' entries do. An entry counts on its own
    /// path, and below it only with `propagate`.
    fn roles_on(&self, ugid: &str, path: &str) -> BTreeMap<String, bool> {
        let Some(path) = normalize_path(path) else {
            return BTreeMap::new();
        };
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let mut roles = BTreeMap::new();
        for depth in 0..=parts.len() {
            let level = format!("/{}", parts[..depth].join("/"));
            let last = depth == parts.len();
            let here = |subject: &dyn Fn(&Subject) -> bool| -> BTreeMap<String, bool> {
                self.acl
                    .iter()
                    .filter(|a| a.path == level && subject(&a.subject) && (last || a.propagate))
                    .map(|a| (a.role.clone(), a.propagate))
                    .collect()
            };
            let own = here(&|s| match s {
                Subject::User(u) | Subject::Token(u) => u == ugid,
                Subject::Group(_) => false,
            });
            if !own.is_empty() {
                roles = own;
                continue;
            }
            let groups = here(&|s| match s {
                Subject::Group(g) => self.groups.get(g).is_some_and(|m| m.contains(ugid)),
                _ => false,
            });
            if !groups.is_empty() {
                roles = groups;
            }
        }
        roles
    }

    /// RPCEnvironment `check`: every one of `privs` on `path`.
    pub fn check(&self, who: &str, path: &str, privs: &[&str]) -> Result<(), Denied> {
        let have = self.permissions(who, path);
        match privs.iter().find(|p| !have.contains_key(**p)) {
            None => Ok(()),
            Some(missing) => Err(Denied::what(format!("{path}, {missing}"))),
        }
    }

    /// RPCEnvironment `check_any`: one of `privs` on `path`.
    pub fn check_any(&self, who: &str, path: &str, privs: &[&str]) -> Result<(), Denied> {
        let have = self.permissions(who, path);
        if privs.iter().any(|p| have.contains_key(*p)) {
            return Ok(());
        }
        Err(Denied::what(format!("{path}, {}", privs.join("|"))))
    }

    fn allowed(&self, who: &str, path: &str, privs: &[&str]) -> bool {
        self.check(who, path, privs).is_ok()
    }

    /// RPCEnvironment `exec_api2_perm_check` on a schema `check` expression:
    /// `["perm", path, [privs], "any", 1, "require_param", p]`,
    /// `["and", ...]`, `["or", ...]`. `Ok(false)` only with `noerr`.
    fn exec(
        &self,
        who: &str,
        check: &Value,
        params: &BTreeMap<String, String>,
        noerr: bool,
    ) -> Result<bool, Denied> {
        let items = check.as_array().map(Vec::as_slice).unwrap_or_default();
        let (Some(test), subs) = (items.first().and_then(Value::as_str), items.get(1..)) else {
            return Err(Denied(None));
        };
        let subs = subs.unwrap_or_default();
        match test {
            // 9.1 runs each part of an `and` without `noerr`: its first
            // failure is the answer, even inside an `or`.
            "and" => {
                for sub in subs {
                    self.exec(who, sub, params, false)?;
                }
                Ok(true)
            }
            "or" => {
                for sub in subs {
                    if self.exec(who, sub, params, true)? {
                        return Ok(true);
                    }
                }
                if noerr {
                    Ok(false)
                } else {
                    Err(Denied(None))
                }
            }
            "perm" => {
                let tmpl = subs.first().and_then(Value::as_str).unwrap_or("/");
                let privs: Vec<&str> = subs
                    .get(1)
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let opts: BTreeMap<&str, &Value> = subs
                    .get(2..)
                    .unwrap_or_default()
                    .chunks(2)
                    .filter_map(|kv| Some((kv.first()?.as_str()?, kv.get(1)?)))
                    .collect();
                if let Some(p) = opts.get("require_param").and_then(|v| v.as_str()) {
                    if !params.contains_key(p) {
                        return if noerr { Ok(false) } else { Err(Denied(None)) };
                    }
                }
                let path = normalize_path(&template_replace(tmpl, params)).unwrap_or_default();
                let any = opts.get("any").is_some_and(|v| v.as_i64() == Some(1));
                let res = if any {
                    self.check_any(who, &path, &privs)
                } else {
                    self.check(who, &path, &privs)
                };
                match res {
                    Ok(()) => Ok(true),
                    Err(_) if noerr => Ok(false),
                    Err(d) => Err(d),
                }
            }
            _ => Err(Denied(None)),
        }
    }
}

/// PVE::Tools::template_replace: `{name}` becomes the parameter's value.
fn template_replace(tmpl: &str, params: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = tmpl;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let name = &rest[open + 1..open + close];
        out.push_str(params.get(name).map(String::as_str).unwrap_or(""));
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

/// The `permissions` of every call the simulator serves, as PVE declares them
/// in its API schema (`../shared/specs/proxmox/PVE-schema.json`; a unit test
/// holds this table to it). `"all"` is `user => 'all'`: any authenticated
/// user, the handler checking further or filtering.
const RULES: &[(&str, &str, &str)] = &[
    ("GET", "/version", "all"),
    ("GET", "/cluster/nextid", "all"),
    ("GET", "/cluster/resources", "all"),
    ("GET", "/nodes", "all"),
    ("GET", "/pools", "all"),
    ("GET", "/access/permissions", "all"),
    (
        "GET",
        "/nodes/{node}/status",
        r#"["perm","/nodes/{node}",["Sys.Audit"]]"#,
    ),
    ("GET", "/nodes/{node}/qemu", "all"),
    ("POST", "/nodes/{node}/qemu", "all"),
    (
        "DELETE",
        "/nodes/{node}/qemu/{vmid}",
        r#"["perm","/vms/{vmid}",["VM.Allocate"]]"#,
    ),
    (
        "GET",
        "/nodes/{node}/qemu/{vmid}/config",
        r#"["perm","/vms/{vmid}",["VM.Audit"]]"#,
    ),
    ("POST", "/nodes/{node}/qemu/{vmid}/config", CONFIG_WRITE),
    ("PUT", "/nodes/{node}/qemu/{vmid}/config", CONFIG_WRITE),
    (
        "POST",
        "/nodes/{node}/qemu/{vmid}/clone",
        r#"["and",["perm","/vms/{vmid}",["VM.Clone"]],["or",["perm","/vms/{newid}",["VM.Allocate"]],["perm","/pool/{pool}",["VM.Allocate"],"require_param","pool"]]]"#,
    ),
    (
        "POST",
        "/nodes/{node}/qemu/{vmid}/template",
        r#"["perm","/vms/{vmid}",["VM.Allocate"]]"#,
    ),
    (
        "GET",
        "/nodes/{node}/qemu/{vmid}/status/current",
        r#"["perm","/vms/{vmid}",["VM.Audit"]]"#,
    ),
    (
        "POST",
        "/nodes/{node}/qemu/{vmid}/status/start",
        r#"["perm","/vms/{vmid}",["VM.PowerMgmt"]]"#,
    ),
    (
        "POST",
        "/nodes/{node}/qemu/{vmid}/status/stop",
        r#"["perm","/vms/{vmid}",["VM.PowerMgmt"]]"#,
    ),
    (
        "POST",
        "/nodes/{node}/qemu/{vmid}/status/shutdown",
        r#"["perm","/vms/{vmid}",["VM.PowerMgmt"]]"#,
    ),
    ("POST", "/nodes/{node}/qemu/{vmid}/agent/ping", AGENT_AUDIT),
    ("GET", "/nodes/{node}/qemu/{vmid}/agent/info", AGENT_AUDIT),
    (
        "GET",
        "/nodes/{node}/qemu/{vmid}/agent/get-host-name",
        AGENT_AUDIT,
    ),
    (
        "GET",
        "/nodes/{node}/qemu/{vmid}/agent/file-read",
        r#"["perm","/vms/{vmid}",["VM.GuestAgent.FileRead","VM.GuestAgent.Unrestricted"],"any",1]"#,
    ),
    (
        "GET",
        "/nodes/{node}/qemu/{vmid}/agent/network-get-interfaces",
        AGENT_AUDIT,
    ),
    (
        "POST",
        "/nodes/{node}/qemu/{vmid}/agent/exec",
        r#"["perm","/vms/{vmid}",["VM.GuestAgent.Unrestricted"]]"#,
    ),
    (
        "GET",
        "/nodes/{node}/qemu/{vmid}/agent/exec-status",
        r#"["perm","/vms/{vmid}",["VM.GuestAgent.Unrestricted"]]"#,
    ),
    (
        "POST",
        "/nodes/{node}/qemu/{vmid}/agent/file-write",
        r#"["perm","/vms/{vmid}",["VM.GuestAgent.FileWrite","VM.GuestAgent.Unrestricted"],"any",1]"#,
    ),
    (
        "POST",
        "/nodes/{node}/qemu/{vmid}/status/reboot",
        r#"["perm","/vms/{vmid}",["VM.PowerMgmt"]]"#,
    ),
    (
        "PUT",
        "/nodes/{node}/qemu/{vmid}/resize",
        r#"["perm","/vms/{vmid}",["VM.Config.Disk"]]"#,
    ),
    (
        "PUT",
        "/nodes/{node}/qemu/{vmid}/cloudinit",
        r#"["perm","/vms/{vmid}",["VM.Config.Cloudinit"]]"#,
    ),
    (
        "GET",
        "/cluster/ha/resources",
        r#"["perm","/",["Sys.Audit"]]"#,
    ),
    (
        "GET",
        "/cluster/ha/resources/{sid}",
        r#"["perm","/",["Sys.Audit"]]"#,
    ),
    (
        "GET",
        "/nodes/{node}/storage/{storage}/status",
        r#"["perm","/storage/{storage}",["Datastore.Audit","Datastore.AllocateSpace"],"any",1]"#,
    ),
    ("GET", "/nodes/{node}/tasks/{upid}/status", "all"),
    ("GET", "/nodes/{node}/tasks/{upid}/log", "all"),
    ("GET", "/nodes/{node}/storage", "all"),
    (
        "GET",
        "/nodes/{node}/storage/{storage}/content",
        r#"["perm","/storage/{storage}",["Datastore.Audit","Datastore.AllocateSpace"],"any",1]"#,
    ),
    (
        "GET",
        "/nodes/{node}/storage/{storage}/content/{volume}",
        "all",
    ),
    (
        "POST",
        "/nodes/{node}/storage/{storage}/download-url",
        r#"["and",["perm","/storage/{storage}",["Datastore.AllocateTemplate"]],["or",["perm","/",["Sys.Audit","Sys.Modify"]],["perm","/nodes/{node}",["Sys.AccessNetwork"]]]]"#,
    ),
];

const CONFIG_WRITE: &str = r#"["perm","/vms/{vmid}",["VM.Config.Disk","VM.Config.CDROM","VM.Config.CPU","VM.Config.Memory","VM.Config.Network","VM.Config.HWType","VM.Config.Options","VM.Config.Cloudinit"],"any",1]"#;
const AGENT_AUDIT: &str =
    r#"["perm","/vms/{vmid}",["VM.GuestAgent.Audit","VM.GuestAgent.Unrestricted"],"any",1]"#;

/// The path parameters of `path` under `template` (`{volume}` takes the rest
/// of the path, `/` included, as PVE's content sub-API does).
fn match_template(template: &str, path: &str) -> Option<BTreeMap<String, String>> {
    let t: Vec<&str> = template.split('/').filter(|s| !s.is_empty()).collect();
    let p: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut out = BTreeMap::new();
    for (i, seg) in t.iter().enumerate() {
        let name = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}'));
        match name {
            Some("volume") if i + 1 == t.len() && p.len() > i => {
                out.insert("volume".to_owned(), p[i..].join("/"));
                return Some(out);
            }
            Some(n) => {
                out.insert(n.to_owned(), (*p.get(i)?).to_owned());
            }
            None if p.get(i) == Some(seg) => {}
            None => return None,
        }
    }
    (t.len() == p.len()).then_some(out)
}

fn rule_for(method: &str, path: &str) -> Option<(&'static str, BTreeMap<String, String>)> {
    RULES.iter().find_map(|(m, tmpl, check)| {
        if *m != method {
            return None;
        }
        match_template(tmpl, path).map(|params| (*check, params))
    })
}

/// Request parameters, first value each, with the path's parameters.
fn flat(params: &Params, path_params: BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = params
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.first()?.clone())))
        .collect();
    out.extend(path_params);
    out
}

/// Authorises `who`'s request before its handler runs: the schema's
/// `permissions` (RPCEnvironment `check_api2_permissions`), then what the
/// handler checks itself before it starts work.
pub fn authorize(
    cl: &Cluster,
    who: &str,
    method: &str,
    path: &str,
    params: &Params,
) -> Result<(), ApiError> {
    if who == ROOT {
        return Ok(());
    }
    let Some((check, path_params)) = rule_for(method, path) else {
        // A call the simulator does not serve: its handler answers 501.
        return Ok(());
    };
    let p = flat(params, path_params);
    if check != "all" {
        let expr: Value = serde_json::from_str(check).expect("RULES hold JSON");
        cl.access.exec(who, &expr, &p, false)?;
    }
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match (method, segs.as_slice()) {
        ("POST", ["nodes", _, "qemu"]) => create_checks(cl, who, &p),
        ("POST" | "PUT", ["nodes", _, "qemu", _, "config"]) => config_checks(cl, who, &p),
        ("POST", ["nodes", _, "qemu", _, "clone"]) => clone_checks(cl, who, &p),
        ("GET", ["nodes", node, "tasks", upid, _]) => task_owner_check(cl, who, node, upid),
        // pve-storage API2/Storage/Content.pm info: "You need read access
        // for the volume" (check_volume_access).
        // `real_volume_id` first: a bare volume name is on this storage; a
        // mismatch is the handler's 400.
        ("GET", ["nodes", _, "storage", storage, "content", _, ..]) => {
            let Some(volume) = p.get("volume") else {
                return Ok(());
            };
            match volume.split_once(':') {
                None => volume_access(cl, who, u32::MAX, &format!("{storage}:{volume}")),
                Some((sid, _)) if sid == *storage => volume_access(cl, who, u32::MAX, volume),
                Some(_) => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

fn vmid_of(p: &BTreeMap<String, String>, key: &str) -> Option<u32> {
    p.get(key)?.parse().ok()
}

/// qemu-server API2/Qemu.pm create_vm: `Datastore.AllocateSpace` on the
/// default storage, then `VM.Allocate` on the new VM (a bare "Permission
/// check failed" without it), the disks' storages, each option's privilege
/// and the bridges.
fn create_checks(cl: &Cluster, who: &str, p: &BTreeMap<String, String>) -> Result<(), ApiError> {
    let a = &cl.access;
    let vmid = vmid_of(p, "vmid").unwrap_or(0);
    if let Some(st) = p.get("storage") {
        a.check(who, &format!("/storage/{st}"), &["Datastore.AllocateSpace"])?;
    }
    if !a.allowed(who, &format!("/vms/{vmid}"), &["VM.Allocate"]) {
        return Err(Denied(None).into());
    }
    check_storage_access(cl, who, vmid, p)?;
    modify_config_perm(a, who, vmid, p.keys().map(String::as_str))?;
    serial_perm(a, who, vmid, p)?;
    bridge_access(a, who, p.iter())?;
    Ok(())
}

/// qemu-server update_vm_api (PUT is synchronous; POST's worker makes the
/// drive and tag checks too, and they fail its task there, where the
/// simulator answers 403 before the task: a simplification noted in the
/// simulator guide).
fn config_checks(cl: &Cluster, who: &str, p: &BTreeMap<String, String>) -> Result<(), ApiError> {
    let a = &cl.access;
    let vmid = vmid_of(p, "vmid").unwrap_or(0);
    let deleted: Vec<&str> = p
        .get("delete")
        .map(|d| d.split([',', ';', ' ']).filter(|k| !k.is_empty()).collect())
        .unwrap_or_default();
    modify_config_perm(a, who, vmid, deleted.iter().copied())?;
    modify_config_perm(a, who, vmid, p.keys().map(String::as_str))?;
    check_storage_access(cl, who, vmid, p)?;
    bridge_access(a, who, p.iter())?;
    let old = cl.vms.get(&vmid).map(|vm| &vm.config);
    for key in &deleted {
        let Some(val) = old.and_then(|c| c.get(*key)) else {
            continue;
        };
        if is_drive_key(key) {
            drive_perms(a, who, vmid, val)?;
        } else if *key == "tags" {
            a.check(who, &format!("/vms/{vmid}"), &["VM.Config.Options"])?;
        } else if key.starts_with("net") {
            bridge_access(a, who, [(&(*key).to_owned(), val)].into_iter())?;
        }
    }
    for (key, val) in p {
        if is_drive_key(key) {
            if let Some(old_val) = old.and_then(|c| c.get(key)) {
                drive_perms(a, who, vmid, old_val)?;
            }
            drive_perms(a, who, vmid, val)?;
        } else if key == "tags" {
            // pve-guest-common GuestHelpers assert_tag_permissions, with the
            // datacenter's default `user-tag-access: free`.
            a.check(who, &format!("/vms/{vmid}"), &["VM.Config.Options"])?;
        }
    }
    Ok(())
}

/// qemu-server clone_vm: `Datastore.AllocateSpace` on each disk's storage
/// (or the target `storage`), and `SDN.Use` on the source's bridges.
fn clone_checks(cl: &Cluster, who: &str, p: &BTreeMap<String, String>) -> Result<(), ApiError> {
    let a = &cl.access;
    let Some(src) = vmid_of(p, "vmid").and_then(|id| cl.vms.get(&id)) else {
        return Ok(());
    };
    for (key, val) in &src.config {
        if !is_drive_key(key) || val.contains("media=cdrom") {
            continue;
        }
        let Some(volid) = drive_volid(val) else {
            continue;
        };
        if volid == "none" {
            continue;
        }
        let sid = p
            .get("storage")
            .map(String::as_str)
            .unwrap_or_else(|| volid.split(':').next().unwrap_or(""));
        a.check(
            who,
            &format!("/storage/{sid}"),
            &["Datastore.AllocateSpace"],
        )?;
    }
    bridge_access(a, who, src.config.iter())?;
    Ok(())
}

/// pve-manager API2/Tasks.pm: a task's owner (the token, or the user for its
/// tokens' tasks) reads it; anyone else needs `Sys.Audit` on the node.
fn task_owner_check(cl: &Cluster, who: &str, node: &str, upid: &str) -> Result<(), ApiError> {
    let Some(owner) = super::tasks::Upid::parse(upid).map(|u| u.user) else {
        return Ok(());
    };
    let user_of_token = owner.split('!').next().unwrap_or("");
    if who == owner || (owner.contains('!') && who == user_of_token) {
        return Ok(());
    }
    cl.access
        .check(who, &format!("/nodes/{node}"), &["Sys.Audit"])?;
    Ok(())
}

/// Option groups of qemu-server's `$check_vm_modify_config_perm`.
fn option_privileges(opt: &str) -> Option<(&'static [&'static str], bool)> {
    const CPU: &[&str] = &[
        "cores",
        "cpu",
        "runningcpu",
        "cpulimit",
        "cpuunits",
        "numa",
        "smp",
        "sockets",
        "vcpus",
    ];
    const MEMORY: &[&str] = &["memory", "balloon", "shares", "allow-ksm"];
    const HWTYPE: &[&str] = &[
        "acpi",
        "hotplug",
        "kvm",
        "machine",
        "runningmachine",
        "scsihw",
        "smbios1",
        "tablet",
        "vga",
        "watchdog",
        "audio0",
        "rng0",
    ];
    const GENERAL: &[&str] = &[
        "agent",
        "autostart",
        "bios",
        "description",
        "keyboard",
        "localtime",
        "migrate_downtime",
        "migrate_speed",
        "name",
        "onboot",
        "ostype",
        "protection",
        "reboot",
        "startdate",
        "startup",
        "tdf",
        "template",
    ];
    const DISK: &[&str] = &["boot", "bootdisk", "vmstatestorage"];
    const CLOUDINIT: &[&str] = &[
        "cicustom",
        "cipassword",
        "citype",
        "ciuser",
        "ciupgrade",
        "nameserver",
        "searchdomain",
        "sshkeys",
    ];
    let numbered = |prefix: &str| {
        opt.strip_prefix(prefix)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    Some(if CPU.contains(&opt) || numbered("numa") {
        (&["VM.Config.CPU"], false)
    } else if MEMORY.contains(&opt) {
        (&["VM.Config.Memory"], false)
    } else if HWTYPE.contains(&opt) {
        (&["VM.Config.HWType"], false)
    } else if GENERAL.contains(&opt) {
        (&["VM.Config.Options"], false)
    } else if opt == "freeze" {
        (&["VM.PowerMgmt"], false)
    } else if DISK.contains(&opt) {
        (&["VM.Config.Disk"], false)
    } else if numbered("net") || opt == "running-nets-host-mtu" {
        (&["VM.Config.Network"], false)
    } else if CLOUDINIT.contains(&opt) || numbered("ipconfig") {
        (&["VM.Config.Cloudinit", "VM.Config.Network"], true)
    } else if opt == "vmstate" {
        (&["VM.Config.Disk", "VM.PowerMgmt"], false)
    } else {
        return None;
    })
}

/// Keys that are the request's steering, not VM options.
const NOT_OPTIONS: &[&str] = &[
    "node",
    "vmid",
    "digest",
    "skiplock",
    "delete",
    "revert",
    "force",
    "background_delay",
    "storage",
    "pool",
    "start",
    "archive",
    "unique",
    "live-restore",
    "import-working-storage",
];

/// qemu-server `$check_vm_modify_config_perm`: each option's privilege;
/// drives, serial ports and tags are checked elsewhere; anything unknown is
/// root's ("only root can set 'x' config", a 500).
fn modify_config_perm<'a>(
    a: &Access,
    who: &str,
    vmid: u32,
    keys: impl Iterator<Item = &'a str>,
) -> Result<(), ApiError> {
    let path = format!("/vms/{vmid}");
    for opt in keys {
        if NOT_OPTIONS.contains(&opt) || is_drive_key(opt) || opt == "cdrom" || opt == "tags" {
            continue;
        }
        let device = ["unused", "serial", "usb", "hostpci", "virtiofs"]
            .iter()
            .any(|p| {
                opt.strip_prefix(p)
                    .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
            });
        if device {
            continue;
        }
        match option_privileges(opt) {
            Some((privs, true)) => a.check_any(who, &path, privs)?,
            Some((privs, false)) => a.check(who, &path, privs)?,
            None => {
                return Err(ApiError::new(
                    500,
                    format!("only root can set '{opt}' config"),
                ))
            }
        }
        if opt == "startup" {
            a.check(who, "/", &["Sys.Modify"])?;
        }
    }
    Ok(())
}

/// `$check_vm_create_serial_perm`: a `socket` serial port is
/// `VM.Config.HWType`; a host device is root's.
fn serial_perm(
    a: &Access,
    who: &str,
    vmid: u32,
    p: &BTreeMap<String, String>,
) -> Result<(), ApiError> {
    for (k, v) in p.iter().filter(|(k, _)| k.starts_with("serial")) {
        if v != "socket" {
            return Err(ApiError::new(
                500,
                format!("only root can set '{k}' config for real devices"),
            ));
        }
        a.check(who, &format!("/vms/{vmid}"), &["VM.Config.HWType"])?;
    }
    Ok(())
}

/// The update worker's `$check_drive_perms`: a cloud-init drive needs both
/// `VM.Config.Cloudinit` and `VM.Config.CDROM`, a CD-ROM `VM.Config.CDROM`,
/// a disk `VM.Config.Disk`.
fn drive_perms(a: &Access, who: &str, vmid: u32, drive: &str) -> Result<(), ApiError> {
    let path = format!("/vms/{vmid}");
    let volid = drive_volid(drive).unwrap_or("");
    if volid.ends_with("cloudinit") {
        a.check(who, &path, &["VM.Config.Cloudinit", "VM.Config.CDROM"])?;
    } else if drive.contains("media=cdrom") || volid == "cdrom" {
        a.check(who, &path, &["VM.Config.CDROM"])?;
    } else {
        a.check(who, &path, &["VM.Config.Disk"])?;
    }
    Ok(())
}

/// qemu-server `$check_storage_access`: a new disk (`storage:size`) needs
/// `Datastore.AllocateSpace` there; an existing volume and an `import-from`
/// source need access to it (pve-storage `check_volume_access`).
fn check_storage_access(
    cl: &Cluster,
    who: &str,
    vmid: u32,
    p: &BTreeMap<String, String>,
) -> Result<(), ApiError> {
    let a = &cl.access;
    for val in p.iter().filter(|(k, _)| is_drive_key(k)).map(|(_, v)| v) {
        let volid = drive_volid(val).unwrap_or("");
        let cdrom = val.contains("media=cdrom");
        // `scsi0: 32` is a new disk on the request's `storage` (NEW_DISK_RE
        // with `$default_storage`).
        let default_storage = p.get("storage").map(String::as_str).unwrap_or("");
        let (sid, volname) = volid.split_once(':').unwrap_or((default_storage, volid));
        let nothing_to_check =
            volid.is_empty() || volid == "none" || volid == "cloudinit" || volname == "cloudinit";
        if nothing_to_check {
            // A drive without a volume, or a cloud-init drive to be made.
        } else if cdrom && volid == "cdrom" {
            a.check(who, "/", &["Sys.Console"])?;
        } else if !cdrom
            && !sid.is_empty()
            && volname.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        {
            a.check(
                who,
                &format!("/storage/{sid}"),
                &["Datastore.AllocateSpace"],
            )?;
        } else {
            volume_access(cl, who, vmid, volid)?;
        }
        let import = val
            .split(',')
            .find_map(|kv| kv.strip_prefix("import-from="));
        if let Some(src) = import {
            volume_access(cl, who, vmid, src)?;
        }
    }
    Ok(())
}

/// pve-storage `PVE/Storage.pm` check_volume_access: `Datastore.Allocate`
/// on the storage is enough; an ISO, container template or import needs
/// `Datastore.AllocateSpace` or `Datastore.Audit`; a VM's own disk is the
/// VM's; another VM's disk needs `Datastore.Audit` there and
/// `VM.Config.Disk` on its owner.
pub fn volume_access(cl: &Cluster, who: &str, vmid: u32, volid: &str) -> Result<(), ApiError> {
    let a = &cl.access;
    let Some((sid, volname)) = volid.split_once(':') else {
        return Err(ApiError::new(
            500,
            "Only root can pass arbitrary filesystem paths.",
        ));
    };
    let storage_path = format!("/storage/{sid}");
    if who == ROOT || a.allowed(who, &storage_path, &["Datastore.Allocate"]) {
        return Ok(());
    }
    let kind = volname.split('/').next().unwrap_or("");
    if ["iso", "vztmpl", "import"].contains(&kind) {
        a.check_any(
            who,
            &storage_path,
            &["Datastore.AllocateSpace", "Datastore.Audit"],
        )?;
        return Ok(());
    }
    match volume_owner(volname) {
        Some(owner) if owner == vmid => Ok(()),
        Some(owner) => {
            a.check(who, &storage_path, &["Datastore.Audit"])?;
            a.check(who, &format!("/vms/{owner}"), &["VM.Config.Disk"])?;
            Ok(())
        }
        None => Err(ApiError::new(
            500,
            format!("missing privileges to access {volid}"),
        )),
    }
}

/// The owning VM of an image volume name: the last `vm-N-` or `base-N-`
/// (a linked clone's `base-X-disk-0/vm-N-disk-0` belongs to N).
fn volume_owner(volname: &str) -> Option<u32> {
    let last = volname.rsplit('/').next()?;
    let rest = last
        .strip_prefix("vm-")
        .or_else(|| last.strip_prefix("base-"))?;
    rest.split('-').next()?.parse().ok()
}

/// pve-guest-common GuestHelpers check_vnet_access via qemu-server
/// check_bridge_access: `SDN.Use` on `/sdn/zones/localnetwork/<bridge>`, or
/// on `.../<bridge>/<tag>` for a VLAN.
fn bridge_access<'a>(
    a: &Access,
    who: &str,
    opts: impl Iterator<Item = (&'a String, &'a String)>,
) -> Result<(), ApiError> {
    for (key, val) in opts {
        let is_net = key
            .strip_prefix("net")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !is_net {
            continue;
        }
        let prop = |name: &str| {
            val.split(',')
                .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
        };
        let Some(bridge) = prop("bridge") else {
            continue;
        };
        let path = match prop("tag") {
            Some(tag) => format!("/sdn/zones/localnetwork/{bridge}/{tag}"),
            None => format!("/sdn/zones/localnetwork/{bridge}"),
        };
        a.check(who, &path, &["SDN.Use"])?;
    }
    Ok(())
}

/// Filters a list the way PVE's handler does for `who`: VMs by `VM.Audit`
/// (pve-manager Cluster.pm resources, qemu-server vmlist), storages by
/// `Datastore.Audit` or `Datastore.AllocateSpace` (pve-storage Status.pm
/// index), volumes by `check_volume_access` (Content.pm index).
pub fn filter(cl: &Cluster, who: &str, method: &str, path: &str, data: Value) -> Value {
    if who == ROOT || method != "GET" {
        return data;
    }
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let Value::Array(items) = data else {
        return data;
    };
    let a = &cl.access;
    let keep = |item: &Value| -> bool {
        match segs.as_slice() {
            ["cluster", "resources"] => match item.get("vmid").and_then(Value::as_u64) {
                Some(id) => a.allowed(who, &format!("/vms/{id}"), &["VM.Audit"]),
                None => match item.get("storage").and_then(Value::as_str) {
                    Some(st) => a
                        .check_any(
                            who,
                            &format!("/storage/{st}"),
                            &["Datastore.Audit", "Datastore.AllocateSpace"],
                        )
                        .is_ok(),
                    None => true,
                },
            },
            ["nodes", _, "qemu"] => item
                .get("vmid")
                .and_then(Value::as_u64)
                .is_some_and(|id| a.allowed(who, &format!("/vms/{id}"), &["VM.Audit"])),
            ["nodes", _, "storage"] => {
                item.get("storage")
                    .and_then(Value::as_str)
                    .is_some_and(|st| {
                        a.check_any(
                            who,
                            &format!("/storage/{st}"),
                            &["Datastore.Audit", "Datastore.AllocateSpace"],
                        )
                        .is_ok()
                    })
            }
            ["nodes", _, "storage", _, "content"] => item
                .get("volid")
                .and_then(Value::as_str)
                .is_some_and(|v| volume_access(cl, who, u32::MAX, v).is_ok()),
            _ => true,
        }
    };
    Value::Array(items.into_iter().filter(keep).collect())
}

/// `GET /access/permissions` (pve-access-control API2/AccessControl.pm):
/// the caller's own privileges, or its tokens'; another's needs `Sys.Audit`
/// on `/access`. With `path`: `{path: privileges}`; without: every path the
/// ACL names plus the top-level ones, where there is any privilege.
pub fn permissions_json(cl: &Cluster, who: &str, params: &Params) -> Result<Value, ApiError> {
    let first = |k: &str| params.get(k).and_then(|v| v.first()).cloned();
    let target = first("userid").unwrap_or_else(|| who.to_owned());
    let owned_token = target.split_once('!').is_some_and(|(u, _)| u == who);
    if target != who && !owned_token && who != ROOT {
        cl.access.check(who, "/access", &["Sys.Audit"])?;
    }
    let as_json = |privs: Privs| -> Value {
        Value::Object(
            privs
                .into_iter()
                .map(|(p, prop)| (p, json!(u8::from(prop))))
                .collect::<Map<_, _>>(),
        )
    };
    if let Some(path) = first("path") {
        let privs = cl.access.permissions(&target, &path);
        return Ok(json!({ path: as_json(privs) }));
    }
    let mut paths: BTreeSet<String> = [
        "/",
        "/access",
        "/access/groups",
        "/nodes",
        "/pool",
        "/sdn",
        "/storage",
        "/vms",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    paths.extend(cl.access.acl.iter().map(|a| a.path.clone()));
    let mut out = Map::new();
    for path in paths {
        let privs = cl.access.permissions(&target, &path);
        if !privs.is_empty() {
            out.insert(path, as_json(privs));
        }
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(cfg: Value) -> Access {
        let mut a = Access::new(parse_token("root@pam!golden=s3cret", false).unwrap());
        a.configure(serde_json::from_value(cfg).unwrap()).unwrap();
        a
    }

    fn builder() -> Value {
        json!({
            "users": ["golden@pve"],
            "roles": {"Builder": ["VM.Audit", "VM.Clone", "VM.Allocate"]},
            "tokens": [
                {"id": "golden@pve!sep", "secret": "a", "privsep": true},
                {"id": "golden@pve!full", "secret": "b", "privsep": false}
            ],
            "acl": [
                {"path": "/vms", "user": "golden@pve", "role": "Builder"},
                {"path": "/vms/9000", "token": "golden@pve!sep", "role": "PVETemplateUser", "propagate": false}
            ]
        })
    }

    #[test]
    fn builtin_roles_are_pves() {
        let r = builtin_roles();
        assert!(r["Administrator"].contains("Sys.Modify"));
        assert!(r["Administrator"].contains("Permissions.Modify"));
        assert!(
            !r["PVEAdmin"].contains("Sys.Modify"),
            "root-level privileges are Administrator's"
        );
        assert!(!r["PVEAdmin"].contains("Mapping.Modify"));
        assert!(r["PVEVMUser"].contains("VM.PowerMgmt") && r["PVEVMUser"].contains("VM.Audit"));
        assert!(!r["PVEVMUser"].contains("VM.Allocate"));
        assert_eq!(r["PVETemplateUser"].len(), 2);
        assert!(r["PVEAuditor"].contains("Datastore.Audit"));
        assert!(
            !r.contains_key("PVESysUser"),
            "Sys has no user-level privileges"
        );
        assert!(r["NoAccess"].is_empty());
    }

    #[test]
    fn acl_propagates_and_deeper_entries_replace() {
        let a = access(builder());
        let user = |p: &str| a.permissions("golden@pve", p);
        assert!(
            user("/vms/100").contains_key("VM.Allocate"),
            "propagated from /vms"
        );
        assert!(user("/").is_empty());
        assert!(user("/storage/local").is_empty());
        // Not propagated: the entry counts on /vms/9000 only, and there it
        // replaces what /vms gave the token (here nothing anyway).
        let sep = |p: &str| a.permissions("golden@pve!sep", p);
        assert_eq!(
            sep("/vms/9000").keys().cloned().collect::<Vec<_>>(),
            vec!["VM.Audit", "VM.Clone"]
        );
        assert!(sep("/vms/9000/x").is_empty(), "no propagate");
        assert!(
            sep("/vms/100").is_empty(),
            "a privsep token has only its own ACLs"
        );
        // Not separated: the user's privileges.
        assert_eq!(
            a.permissions("golden@pve!full", "/vms/100"),
            user("/vms/100")
        );
        assert!(a.permissions("golden@pve!nope", "/vms/100").is_empty());
        assert!(a
            .permissions("root@pam", "/anything")
            .contains_key("Sys.Modify"));
    }

    #[test]
    fn privsep_tokens_intersect_with_their_user() {
        let mut cfg = builder();
        cfg["acl"] = json!([
            {"path": "/", "user": "golden@pve", "role": "PVEVMUser"},
            {"path": "/", "token": "golden@pve!sep", "role": "PVEVMAdmin"}
        ]);
        let a = access(cfg);
        let sep = a.permissions("golden@pve!sep", "/vms/1");
        assert!(sep.contains_key("VM.PowerMgmt"), "both have it");
        assert!(
            !sep.contains_key("VM.Allocate"),
            "the token has it, its user not"
        );
    }

    #[test]
    fn groups_count_unless_the_subject_has_its_own_entry_and_noaccess_wins() {
        let a = access(json!({
            "users": ["a@pve", "b@pve"],
            "groups": {"ops": ["a@pve", "b@pve"]},
            "acl": [
                {"path": "/", "group": "ops", "role": "PVEAuditor"},
                {"path": "/vms", "user": "b@pve", "role": "PVEVMUser"},
                {"path": "/vms/7", "user": "a@pve", "role": "NoAccess"}
            ]
        }));
        assert!(a
            .permissions("a@pve", "/storage/x")
            .contains_key("Datastore.Audit"));
        assert!(a.permissions("a@pve", "/vms/7").is_empty());
        let b = a.permissions("b@pve", "/vms/7");
        assert!(b.contains_key("VM.PowerMgmt") && !b.contains_key("Datastore.Audit"));
    }

    #[test]
    fn checks_word_their_refusals_as_pve() {
        let a = access(builder());
        let e: ApiError = a
            .check("golden@pve!full", "/vms/100", &["VM.PowerMgmt"])
            .unwrap_err()
            .into();
        assert_eq!(
            (e.status, e.message.as_str()),
            (403, "Permission check failed (/vms/100, VM.PowerMgmt)")
        );
        let e: ApiError = a
            .check_any(
                "golden@pve!full",
                "/storage/local",
                &["Datastore.Audit", "Datastore.AllocateSpace"],
            )
            .unwrap_err()
            .into();
        assert_eq!(
            e.message,
            "Permission check failed (/storage/local, Datastore.Audit|Datastore.AllocateSpace)"
        );
        let p: BTreeMap<String, String> = [("node", "pve"), ("storage", "local")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let (check, _) = rule_for("POST", "/nodes/pve/storage/local/download-url").unwrap();
        let expr: Value = serde_json::from_str(check).unwrap();
        let e = a.exec("golden@pve!full", &expr, &p, false).unwrap_err();
        assert_eq!(
            e,
            Denied::what("/storage/local, Datastore.AllocateTemplate")
        );
        // With the storage privilege, the `or` fails without naming anything.
        let mut cfg = builder();
        cfg["acl"] = json!([{"path": "/", "user": "golden@pve", "role": "PVEDatastoreAdmin"}]);
        let a = access(cfg);
        assert_eq!(
            a.exec("golden@pve!full", &expr, &p, false).unwrap_err(),
            Denied(None)
        );
    }

    #[test]
    fn paths_normalise_and_templates_match_volumes_with_slashes() {
        assert_eq!(normalize_path("//vms//100/").as_deref(), Some("/vms/100"));
        assert_eq!(normalize_path("").as_deref(), Some("/"));
        assert_eq!(normalize_path("/vms/a b"), None);
        let m = match_template(
            "/nodes/{node}/storage/{storage}/content/{volume}",
            "/nodes/pve/storage/local/content/local:9000/base-9000-disk-0.qcow2/201/vm-201-disk-0.qcow2",
        )
        .unwrap();
        assert_eq!(
            m["volume"],
            "local:9000/base-9000-disk-0.qcow2/201/vm-201-disk-0.qcow2"
        );
        assert!(match_template("/nodes/{node}/qemu", "/nodes/pve/qemu/1").is_none());
        assert_eq!(
            volume_owner("9000/base-9000-disk-0.qcow2/201/vm-201-disk-0.qcow2"),
            Some(201)
        );
        assert_eq!(volume_owner("vm-105-cloudinit"), Some(105));
        assert_eq!(volume_owner("import/debian.qcow2"), None);
    }

    #[test]
    fn option_privileges_follow_qemu_server() {
        assert_eq!(option_privileges("name").unwrap().0, ["VM.Config.Options"]);
        assert_eq!(
            option_privileges("ipconfig0").unwrap(),
            (&["VM.Config.Cloudinit", "VM.Config.Network"][..], true)
        );
        assert_eq!(option_privileges("scsihw").unwrap().0, ["VM.Config.HWType"]);
        assert_eq!(option_privileges("net0").unwrap().0, ["VM.Config.Network"]);
        assert_eq!(option_privileges("args"), None, "root only");
    }

    /// The table above is PVE's: every rule equals the schema's
    /// `permissions` for that call.
    #[test]
    fn rules_are_the_schemas_permissions() {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/specs/proxmox/PVE-schema.json");
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (../shared must sit beside the clone)",
                file.display()
            )
        });
        let root: Value = serde_json::from_str(&text).unwrap();
        let mut found = BTreeMap::new();
        let mut stack: Vec<&Value> = root.as_array().unwrap().iter().collect();
        while let Some(node) = stack.pop() {
            if let Some(children) = node.get("children").and_then(Value::as_array) {
                stack.extend(children);
            }
            let path = node["path"].as_str().unwrap_or_default();
            for (method, info) in node
                .get("info")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                found.insert(
                    (method.clone(), path.to_owned()),
                    info.get("permissions").cloned(),
                );
            }
        }
        for (method, path, check) in RULES {
            let perms = found
                .get(&((*method).to_owned(), (*path).to_owned()))
                .unwrap_or_else(|| panic!("{method} {path} is not in the schema"))
                .clone()
                .unwrap_or(Value::Null);
            if *check == "all" {
                assert_eq!(perms["user"], "all", "{method} {path}: {perms}");
                assert!(perms.get("check").is_none(), "{method} {path}");
            } else {
                let ours: Value = serde_json::from_str(check).unwrap();
                assert_eq!(perms["check"], ours, "{method} {path}");
            }
        }
    }
}
