//! DO's `/v2` handlers. Each modelled fact names its source: a path in the
//! OpenAPI description (`resources/...`), DO's docs, or a public client.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use super::page::page;
use super::state::Backend;
use super::state::{
    now, region_json, size_json, Account, ActionMeta, Droplet, Image, Key, ResourceType, Shared,
    Status, REGIONS, SIZES,
};
use super::{qemu, ssh, ApiError, ApiResult};
use crate::core::cloudinit;
use crate::core::ops::{self, Armed, Start};
use crate::core::spec::Params;

fn first<'a>(p: &'a Params, k: &str) -> Option<&'a str> {
    p.get(k).and_then(|v| v.first()).map(String::as_str)
}

fn id_of(s: &str) -> Result<u64, ApiError> {
    s.parse().map_err(|_| ApiError::not_found())
}

fn ok(status: u16, v: Value) -> ApiResult {
    Ok((status, v))
}

fn no_content() -> ApiResult {
    Ok((204, Value::Null))
}

pub async fn dispatch(
    shared: &Shared,
    method: &str,
    path: &str,
    p: &Params,
    body: Value,
) -> ApiResult {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let Some(("v2", segs)) = segs.split_first().map(|(a, b)| (*a, b)) else {
        return Err(ApiError::not_found());
    };
    let mut a = shared.lock();
    let base = format!("{}{}", a.public_url(), path.trim_end_matches('/'));
    match (method, segs) {
        ("GET", ["account"]) => ok(200, account()),
        ("GET", ["account", "keys"]) => {
            let keys = a.keys.values().map(Key::json).collect();
            ok(200, page(keys, "ssh_keys", p, &base))
        }
        ("POST", ["account", "keys"]) => create_key(&mut a, &body),
        ("GET", ["account", "keys", k]) => ok(200, json!({"ssh_key": find_key(&a, k)?.json()})),
        ("PUT", ["account", "keys", k]) => {
            let id = find_key(&a, k)?.id;
            let key = a.keys.get_mut(&id).ok_or_else(ApiError::not_found)?;
            if let Some(n) = body.get("name").and_then(Value::as_str) {
                key.name = n.to_owned();
            }
            ok(200, json!({"ssh_key": key.json()}))
        }
        ("DELETE", ["account", "keys", k]) => {
            let id = find_key(&a, k)?.id;
            a.keys.remove(&id);
            no_content()
        }
        ("GET", ["regions"]) => {
            let regions = REGIONS.iter().map(|r| region_json(r.0)).collect();
            ok(200, page(regions, "regions", p, &base))
        }
        ("GET", ["sizes"]) => {
            let sizes = SIZES.iter().filter_map(|s| size_json(s.0)).collect();
            ok(200, page(sizes, "sizes", p, &base))
        }
        ("GET", ["droplets"]) => {
            let tag = first(p, "tag_name");
            let name = first(p, "name");
            // resources/droplets/parameters.yml: `name` "can not be combined
            // with `tag_name`", `tag_name` "Can not be combined with `name`
            // or `type`". DO's answer to it is not documented (droplets_list.yml
            // lists 200, 401, 429, 500 and default): refused here as a bad
            // request in DO's error shape.
            if tag.is_some() && (name.is_some() || first(p, "type").is_some()) {
                return Err(ApiError::bad_request(
                    "The tag_name filter can not be combined with name or type.",
                ));
            }
            let list = a
                .droplets
                .values()
                .filter(|d| tag.is_none_or(|t| d.tags.iter().any(|x| x == t)))
                .filter(|d| name.is_none_or(|n| d.name == n))
                .map(|d| a.droplet_json(d))
                .collect();
            ok(200, page(list, "droplets", p, &base))
        }
        ("POST", ["droplets"]) => create_droplet(shared, &mut a, &body),
        // resources/droplets/droplets_destroy_byTag.yml: 204.
        ("DELETE", ["droplets"]) => {
            let tag = first(p, "tag_name").unwrap_or("").to_owned();
            let ids: Vec<u64> = a
                .droplets
                .values()
                .filter(|d| d.tags.contains(&tag))
                .map(|d| d.id)
                .collect();
            for id in ids {
                if let Some(d) = a.droplets.remove(&id) {
                    qemu::droplet_removed(&mut a, d);
                }
            }
            no_content()
        }
        ("GET", ["droplets", id]) => {
            let d = a
                .droplets
                .get(&id_of(id)?)
                .ok_or_else(ApiError::not_found)?;
            ok(200, json!({"droplet": a.droplet_json(d)}))
        }
        ("DELETE", ["droplets", id]) => {
            let d = a
                .droplets
                .remove(&id_of(id)?)
                .ok_or_else(ApiError::not_found)?;
            qemu::droplet_removed(&mut a, d);
            no_content()
        }
        ("GET", ["droplets", id, "snapshots"]) => {
            let d = a
                .droplets
                .get(&id_of(id)?)
                .ok_or_else(ApiError::not_found)?;
            let snaps = d
                .snapshot_ids
                .iter()
                .filter_map(|i| a.images.get(i))
                .map(snapshot_json)
                .collect();
            ok(200, page(snaps, "snapshots", p, &base))
        }
        ("GET", ["droplets", id, "actions"]) => {
            let d = a
                .droplets
                .get(&id_of(id)?)
                .ok_or_else(ApiError::not_found)?;
            let list = d
                .action_ids
                .iter()
                .filter_map(|i| a.action_json(*i))
                .collect();
            ok(200, page(list, "actions", p, &base))
        }
        ("POST", ["droplets", id, "actions"]) => droplet_action(shared, &mut a, id_of(id)?, &body),
        ("GET", ["droplets", id, "actions", act]) => {
            let d = a
                .droplets
                .get(&id_of(id)?)
                .ok_or_else(ApiError::not_found)?;
            let act = id_of(act)?;
            if !d.action_ids.contains(&act) {
                return Err(ApiError::not_found());
            }
            ok(
                200,
                json!({"action": a.action_json(act).ok_or_else(ApiError::not_found)?}),
            )
        }
        ("GET", ["actions"]) => {
            let ids: Vec<u64> = a.action_ids();
            let list = ids.iter().rev().filter_map(|i| a.action_json(*i)).collect();
            ok(200, page(list, "actions", p, &base))
        }
        ("GET", ["actions", act]) => ok(
            200,
            json!({"action": a.action_json(id_of(act)?).ok_or_else(ApiError::not_found)?}),
        ),
        ("GET", ["images"]) => ok(200, page(list_images(&a, p), "images", p, &base)),
        ("GET", ["images", id]) => ok(200, json!({"image": find_image(&a, id)?.json()})),
        ("PUT", ["images", id]) => update_image(&mut a, id, &body),
        ("DELETE", ["images", id]) => {
            let img = find_image(&a, id)?;
            if img.public {
                return Err(forbidden());
            }
            let id = img.id;
            if let Some(img) = a.images.remove(&id) {
                qemu::image_removed(&mut a, &img);
            }
            for d in a.droplets.values_mut() {
                d.snapshot_ids.retain(|s| *s != id);
            }
            no_content()
        }
        ("POST", ["images", id, "actions"]) => image_action(shared, &mut a, id, &body),
        ("GET", ["images", id, "actions", act]) => {
            let img = find_image(&a, id)?.id;
            let act = id_of(act)?;
            let v = a.action_json(act).ok_or_else(ApiError::not_found)?;
            if v["resource_id"] != json!(img) || v["resource_type"] != "image" {
                return Err(ApiError::not_found());
            }
            ok(200, json!({"action": v}))
        }
        ("GET", ["tags"]) => {
            let list = a.tags.iter().map(|t| a.tag_json(t)).collect();
            ok(200, page(list, "tags", p, &base))
        }
        ("POST", ["tags"]) => create_tag(&mut a, &body),
        ("GET", ["tags", tag]) => {
            let t = find_tag(&a, tag)?;
            ok(200, json!({"tag": a.tag_json(&t)}))
        }
        ("DELETE", ["tags", tag]) => {
            let t = find_tag(&a, tag)?;
            a.tags.remove(&t);
            for d in a.droplets.values_mut() {
                d.tags.retain(|x| *x != t);
            }
            for i in a.images.values_mut() {
                i.tags.retain(|x| *x != t);
            }
            no_content()
        }
        (_, ["tags", tag, "resources"]) if method == "POST" || method == "DELETE" => {
            tag_resources(&mut a, tag, &body, method == "POST")
        }
        _ => Err(ApiError::not_found()),
    }
}

/// DO's 403 (shared/responses/forbidden.yml).
fn forbidden() -> ApiError {
    ApiError::new(
        403,
        "forbidden",
        "You do not have access for the attempted action.",
    )
}

/// `GET /v2/account` (resources/account/models/account.yml).
fn account() -> Value {
    json!({"account": {
        "droplet_limit": 25, "floating_ip_limit": 3, "volume_limit": 100,
        "email": "golden@example.com", "name": "golden-sim",
        "uuid": "b6fr89dbf6d9156cace5f3c78dc9851d957381ef",
        "email_verified": true, "status": "active", "status_message": "",
        "team": {"uuid": "5df3e3004a17e242b7c20ca6c9fc25b701a47ece", "name": "golden-sim"},
    }})
}

// ---- SSH keys ----------------------------------------------------------

/// The MD5 fingerprint of an OpenSSH public key line, or why it is not one.
/// DO refuses a key it cannot parse with 422 (its message: "SSH Key is
/// invalid, key should be of the form 'type key [comment]'", as seen in
/// godo/doctl issue reports).
fn fingerprint(public_key: &str) -> Result<String, ApiError> {
    let invalid = || {
        ApiError::unprocessable(
            "SSH Key is invalid, key should be of the form 'type key [comment]'",
        )
    };
    let mut words = public_key.split_whitespace();
    let (Some(kind), Some(blob)) = (words.next(), words.next()) else {
        return Err(invalid());
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .map_err(|_| invalid())?;
    // The blob starts with its own type name (RFC 4253 6.6).
    let len = bytes
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
    if len.and_then(|n| bytes.get(4..4 + n)) != Some(kind.as_bytes()) {
        return Err(invalid());
    }
    let digest = super::md5::md5(&bytes);
    Ok(digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":"))
}

fn create_key(a: &mut Account, body: &Value) -> ApiResult {
    let public_key = body["public_key"].as_str().unwrap_or("").trim().to_owned();
    let name = body["name"].as_str().unwrap_or("").to_owned();
    let fp = fingerprint(&public_key)?;
    if a.keys.values().any(|k| k.fingerprint == fp) {
        return Err(ApiError::unprocessable(
            "SSH Key is already in use on your account",
        ));
    }
    let id = a.next_id();
    let key = Key {
        id,
        name,
        public_key,
        fingerprint: fp,
    };
    let v = key.json();
    a.keys.insert(id, key);
    ok(201, json!({"ssh_key": v}))
}

/// A key by id or fingerprint (resources/ssh_keys/parameters: `ssh_key_identifier`).
fn find_key<'a>(a: &'a Account, k: &str) -> Result<&'a Key, ApiError> {
    match k.parse::<u64>() {
        Ok(id) => a.keys.get(&id),
        Err(_) => a.keys.values().find(|x| x.fingerprint == k),
    }
    .ok_or_else(ApiError::not_found)
}

// ---- droplets ----------------------------------------------------------

/// DO's limit on `user_data`: resources/droplets/models/droplet_create.yml
/// "may not exceed 64 KiB in size" (and the docs: "User data is limited to
/// 64 KiB"). DO's exact error for it was not found in its description, docs
/// or public issues: refused as 422 `unprocessable_entity` (DO's status for
/// an invalid create), worded here.
pub const MAX_USER_DATA: usize = 64 * 1024;

fn create_droplet(shared: &Shared, a: &mut Account, body: &Value) -> ApiResult {
    let Some(name) = body["name"].as_str() else {
        return Err(ApiError::unprocessable(
            "creating several droplets at once (`names`) is not simulated",
        ));
    };
    if let Some(ud) = body["user_data"].as_str() {
        if ud.len() > MAX_USER_DATA {
            return Err(ApiError::unprocessable(format!(
                "user_data is {} bytes; it may not exceed 64 KiB ({MAX_USER_DATA} bytes).",
                ud.len()
            )));
        }
    }
    let region = body["region"].as_str().unwrap_or("nyc3").to_owned();
    if !REGIONS.iter().any(|r| r.0 == region) {
        return Err(ApiError::unprocessable("Region is not available"));
    }
    let size = body["size"].as_str().unwrap_or("").to_owned();
    if size_json(&size).is_none() {
        return Err(ApiError::unprocessable(
            "Size is not available in this region.",
        ));
    }
    let image_ref = match &body["image"] {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => String::new(),
    };
    let image = a
        .image_by_id_or_slug(&image_ref)
        .filter(|i| i.status == "available")
        .ok_or_else(|| {
            ApiError::unprocessable("You specified an invalid image for Droplet creation.")
        })?;
    // A snapshot lives in the regions it was taken in or transferred to.
    if !image.regions.contains(&region) {
        return Err(ApiError::unprocessable(format!(
            "The image is not available in the region {region}."
        )));
    }
    if a.opts.backend == Backend::Qemu {
        if let Err(why) = qemu::image_file(image) {
            return Err(ApiError::unprocessable(format!(
                "You specified an invalid image for Droplet creation. ({why})"
            )));
        }
    }
    let (image_id, fs) = (image.id, image.fs.clone());
    let mut keys = Vec::new();
    for k in body["ssh_keys"].as_array().into_iter().flatten() {
        let text = match k {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            _ => String::new(),
        };
        let key = find_key(a, &text).map_err(|_| {
            ApiError::unprocessable("You specified an invalid ssh key for Droplet creation.")
        })?;
        keys.push(key.clone());
    }
    let user_data = body["user_data"].as_str().map(str::to_owned);
    let tags: Vec<String> = body["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect();
    // droplets_create.yml `tags`: "Tag names can either be existing or new tags."
    let tags: Vec<String> = tags.into_iter().map(|t| canonical_or_new(a, &t)).collect();
    let ip = free_ip(a).ok_or_else(|| {
        ApiError::unprocessable("no loopback address left for a droplet (254 live)")
    })?;
    let id = a.next_id();
    a.droplets.insert(
        id,
        Droplet {
            id,
            name: name.to_owned(),
            region: region.clone(),
            size,
            image_id,
            status: Status::New,
            locked: false,
            created_at: now(),
            tags,
            user_data,
            keys,
            ip,
            host_key: None,
            snapshot_ids: Vec::new(),
            action_ids: Vec::new(),
            fs,
            sshd: None,
            guest: None,
            disk: None,
            backing: None,
        },
    );
    let act = start_action(
        shared,
        a,
        id,
        ResourceType::Droplet,
        "create",
        &region,
        a.opts.action_ms,
        DropletWork::Boot,
    );
    let droplet = a.droplet_json(&a.droplets[&id]);
    // droplets_create.yml: 202 with `links.actions` (the create action).
    ok(
        202,
        json!({
            "droplet": droplet,
            "links": {"actions": [{"id": act, "rel": "create", "href": format!("{}/v2/actions/{act}", a.public_url())}]},
        }),
    )
}

/// The loopback address for a new droplet: unused by live droplets and
/// bindable on the ssh port (another simulator may hold it).
fn free_ip(a: &Account) -> Option<String> {
    (2..=254)
        .map(|n| format!("127.0.0.{n}"))
        .find(|ip| !a.droplets.values().any(|d| &d.ip == ip) && ssh::bindable(ip, a.opts.ssh_port))
}

/// What a droplet action does when its time is up.
#[derive(Debug, Clone)]
enum DropletWork {
    /// First boot: cloud-init, sshd, `active`.
    Boot,
    PowerOff,
    /// ACPI shutdown: the guest may ignore it.
    Shutdown,
    PowerOn,
    Snapshot(String),
}

fn droplet_action(shared: &Shared, a: &mut Account, id: u64, body: &Value) -> ApiResult {
    let d = a.droplets.get(&id).ok_or_else(ApiError::not_found)?;
    // A droplet runs one action at a time: DO's 422 for a second one.
    if d.action_ids.iter().any(|i| a.action_running(*i)) {
        return Err(ApiError::unprocessable(
            "Droplet already has a pending event.",
        ));
    }
    let kind = body["type"].as_str().unwrap_or("");
    let work = match kind {
        "power_off" => DropletWork::PowerOff,
        "shutdown" => DropletWork::Shutdown,
        "power_on" => DropletWork::PowerOn,
        "snapshot" => {
            // An unnamed snapshot is named after the droplet and the time in
            // milliseconds (droplet_snapshot.yml's example `web-01-1595954862243`).
            let name = body["name"].as_str().map(str::to_owned).unwrap_or_else(|| {
                let ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0);
                format!("{}-{ms}", d.name)
            });
            DropletWork::Snapshot(name)
        }
        other => {
            return Err(ApiError::unprocessable(format!(
                "the droplet action '{other}' is not simulated (power_off, shutdown, power_on, snapshot are)"
            )))
        }
    };
    let region = d.region.clone();
    if matches!(work, DropletWork::Snapshot(_))
        && a.opts.backend == Backend::Qemu
        && d.guest.is_some()
    {
        // DO snapshots running droplets too; a running QEMU guest's overlay
        // cannot be copied consistently from outside, so power off first
        // (what DO recommends and golden does).
        return Err(ApiError::unprocessable(
            "The simulator's QEMU backend snapshots powered-off droplets only: power the droplet off first.",
        ));
    }
    if matches!(work, DropletWork::Snapshot(_)) {
        // `locked` while the snapshot is taken (droplet.yml `locked`).
        if let Some(d) = a.droplets.get_mut(&id) {
            d.locked = true;
        }
    }
    let act = start_action(
        shared,
        a,
        id,
        ResourceType::Droplet,
        kind,
        &region,
        a.opts.action_ms,
        work,
    );
    // dropletActions_post.yml: 201 with the action.
    ok(201, json!({"action": a.action_json(act)}))
}

/// Registers an action and runs its work after `ms` (core::ops): an armed
/// fault makes it end `errored` with its work undone.
#[allow(clippy::too_many_arguments)]
fn start_action(
    shared: &Shared,
    a: &mut Account,
    resource_id: u64,
    resource_type: ResourceType,
    kind: &str,
    region: &str,
    ms: u64,
    work: DropletWork,
) -> u64 {
    let id = a.next_id();
    let started = crate::core::util::unix_now();
    let meta = ActionMeta {
        id,
        kind: kind.to_owned(),
        started_at: super::state::rfc3339(started),
        ends_at: super::state::rfc3339(started + ms.div_ceil(1000)),
        resource_id,
        resource_type,
        region: region.to_owned(),
    };
    let fault = a
        .take_action_fault(kind)
        .then(|| Armed::Fail(format!("{kind} failed (simulated)")));
    if let Some(d) = a
        .droplets
        .get_mut(&resource_id)
        .filter(|_| resource_type == ResourceType::Droplet)
    {
        d.action_ids.push(id);
    }
    let start = Start {
        id: id.to_string(),
        meta,
        first_line: format!("{kind} {resource_id}"),
        duration: Duration::from_millis(ms),
        fault,
    };
    let sh = shared.clone();
    let work_fut = async move {
        let backend = sh.lock().opts.backend;
        let result = match backend {
            Backend::Instant => run_droplet_work(&sh, resource_id, work).await,
            Backend::Qemu => run_qemu_work(&sh, resource_id, work).await,
        };
        // Real work takes its own time: the action ends when it is done.
        if let Some(op) = sh.lock().actions.get_mut(&id.to_string()) {
            op.meta.ends_at = now();
        }
        result
    };
    ops::spawn(shared, a, start, work_fut, move |a: &mut Account| {
        if let Some(d) = a.droplets.get_mut(&resource_id) {
            d.locked = false;
        }
    });
    id
}

async fn run_droplet_work(shared: &Shared, id: u64, work: DropletWork) -> Result<(), String> {
    match work {
        DropletWork::Boot => boot(shared, id).await,
        DropletWork::PowerOn => power_on(shared, id).await,
        DropletWork::PowerOff => {
            power_off(shared, id);
            Ok(())
        }
        DropletWork::Shutdown => {
            let mut a = shared.lock();
            // `shutdown` is best effort: a guest that ignores it leaves the
            // droplet `active` while the action still ends `completed`
            // (digitalocean/api-v2 #79, DO staff: "The action was issued,
            // took place, completed with success, however the droplet did
            // not shutdown"). Clients must watch the droplet's status.
            if a.behaviour.never_power_off {
                return Ok(());
            }
            drop(a.droplets.get_mut(&id).map(|d| {
                d.status = Status::Off;
                d.sshd.take()
            }));
            Ok(())
        }
        DropletWork::Snapshot(name) => {
            snapshot(shared, id, name, None);
            Ok(())
        }
    }
}

/// The QEMU backend's droplet work (`super::qemu`).
async fn run_qemu_work(shared: &Shared, id: u64, work: DropletWork) -> Result<(), String> {
    match work {
        DropletWork::Boot => qemu::create(shared, id).await,
        DropletWork::PowerOn => qemu::start(shared, id).await,
        DropletWork::PowerOff => qemu::power_off(shared, id).await,
        DropletWork::Shutdown => qemu::shutdown(shared, id).await,
        DropletWork::Snapshot(name) => {
            let image_id = shared.lock().next_id();
            let path = qemu::snapshot_file(shared, id, image_id).await?;
            let size = qemu::size_gigabytes(&path);
            snapshot(shared, id, name, Some((image_id, path, size)));
            Ok(())
        }
    }
}

/// First boot: cloud-init runs the user data in the droplet's filesystem,
/// then its sshd starts and it is `active`; `power_state: poweroff` turns it
/// `off` a moment later (unless the guest never powers off).
async fn boot(shared: &Shared, id: u64) -> Result<(), String> {
    let power_off_after = {
        let mut a = shared.lock();
        let Some(d) = a.droplets.get_mut(&id) else {
            return Err("the droplet was deleted".into());
        };
        let outcome = cloudinit::first_boot(
            &mut d.fs,
            &d.name.clone(),
            d.user_data.clone().as_deref(),
            "DataSourceDigitalOcean",
        );
        d.host_key = outcome.host_key;
        outcome.power_off
    };
    start_sshd(shared, id).await?;
    set_status(shared, id, Status::Active);
    if power_off_after {
        let sh = shared.clone();
        let ms = shared.lock().opts.action_ms;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            if !sh.lock().behaviour.never_power_off {
                power_off(&sh, id);
            }
        });
    }
    Ok(())
}

async fn power_on(shared: &Shared, id: u64) -> Result<(), String> {
    start_sshd(shared, id).await?;
    set_status(shared, id, Status::Active);
    Ok(())
}

fn set_status(shared: &Shared, id: u64, status: Status) {
    if let Some(d) = shared.lock().droplets.get_mut(&id) {
        d.status = status;
    }
}

fn power_off(shared: &Shared, id: u64) {
    let sshd = shared.lock().droplets.get_mut(&id).and_then(|d| {
        d.status = Status::Off;
        d.sshd.take()
    });
    drop(sshd);
}

/// Starts the droplet's sshd (a fresh host key when cloud-init gave none,
/// kept for later boots). Without keys there is no ssh login (DO e-mails a
/// root password), but sshd still answers, as a droplet's would.
async fn start_sshd(shared: &Shared, id: u64) -> Result<(), String> {
    let (dir, ip, port, keys, host_key, admin) = {
        let a = shared.lock();
        let Some(d) = a.droplets.get(&id) else {
            return Err("the droplet was deleted".into());
        };
        (
            a.opts.state_dir.join(format!("droplet-{id}")),
            d.ip.clone(),
            a.opts.ssh_port,
            d.keys
                .iter()
                .map(|k| k.public_key.clone())
                .collect::<Vec<_>>(),
            d.host_key.clone(),
            format!("{}/_sim", a.endpoint),
        )
    };
    let host_key = match host_key {
        Some(k) => k,
        None => {
            let k = ssh::generate_host_key(&dir).map_err(|e| format!("{e:#}"))?;
            if let Some(d) = shared.lock().droplets.get_mut(&id) {
                d.host_key = Some(k.clone());
            }
            k
        }
    };
    let spec = ssh::SshdSpec {
        dir,
        ip: &ip,
        port,
        host_key: &host_key.0,
        authorized_keys: keys,
        admin_url: &admin,
        droplet_id: id,
    };
    // Blocking (a process start and a short wait for its port) on this
    // worker thread, which outlives the sshd (its PR_SET_PDEATHSIG).
    let sshd = tokio::task::block_in_place(|| ssh::start(&spec)).map_err(|e| format!("{e:#}"))?;
    let mut a = shared.lock();
    match a.droplets.get_mut(&id) {
        Some(d) => d.sshd = Some(sshd),
        None => return Err("the droplet was deleted".into()),
    }
    Ok(())
}

/// The snapshot image: the droplet's filesystem without what lives in RAM
/// (`/run`, `/tmp`), private, in the droplet's region, with no tags (a
/// snapshot does not inherit its droplet's tags and the action takes none:
/// digitalocean/openapi #854).
/// With the QEMU backend, `file` is the image's id, its flattened qcow2
/// and that file's size.
fn snapshot(shared: &Shared, id: u64, name: String, file: Option<(u64, PathBuf, f64)>) {
    let mut a = shared.lock();
    let (image_id, path, size_gigabytes) = match file {
        Some((i, p, s)) => (i, Some(p), s),
        None => (a.next_id(), None, 2.36),
    };
    let Some(d) = a.droplets.get_mut(&id) else {
        if let Some(p) = path {
            let _ = std::fs::remove_file(p);
        }
        return;
    };
    let mut fs = d.fs.clone();
    fs.retain(|k, _| !k.starts_with("/run/") && !k.starts_with("/tmp/"));
    let disk = SIZES
        .iter()
        .find(|s| s.0 == d.size)
        .map(|s| s.3)
        .unwrap_or(25);
    d.locked = false;
    d.snapshot_ids.push(image_id);
    let region = d.region.clone();
    let source = a
        .images
        .get(&a.droplets[&id].image_id)
        .map(|i| i.distribution.clone());
    a.images.insert(
        image_id,
        Image {
            id: image_id,
            name,
            kind: "snapshot",
            distribution: source.unwrap_or_else(|| "Unknown".into()),
            slug: None,
            public: false,
            regions: vec![region],
            created_at: now(),
            min_disk_size: disk,
            size_gigabytes,
            description: String::new(),
            tags: Vec::new(),
            status: "available",
            fs,
            path,
        },
    );
}

/// `GET /v2/droplets/{id}/snapshots` items
/// (resources/droplets/models/droplet_snapshot.yml): integer `id`, `type`.
fn snapshot_json(i: &Image) -> Value {
    json!({
        "id": i.id, "name": i.name, "created_at": i.created_at,
        "regions": i.regions, "min_disk_size": i.min_disk_size,
        "size_gigabytes": i.size_gigabytes, "type": "snapshot",
    })
}

// ---- images -------------------------------------------------------------

/// `GET /v2/images` filters (resources/images/images_list.yml): `private`,
/// `tag_name`, `type` (distribution: public OS images; application: 1-click
/// apps, of which there are none here).
fn list_images(a: &Account, p: &Params) -> Vec<Value> {
    let private = first(p, "private") == Some("true");
    let tag = first(p, "tag_name");
    let ty = first(p, "type");
    a.images
        .values()
        .filter(|i| !private || !i.public)
        .filter(|i| tag.is_none_or(|t| i.tags.iter().any(|x| x == t)))
        .filter(|i| match ty {
            Some("distribution") => i.public && i.kind == "base",
            Some("application") => false,
            _ => true,
        })
        .map(Image::json)
        .collect()
}

/// An image by id or public slug (images_get.yml `image_id`: integer or slug).
fn find_image<'a>(a: &'a Account, id: &str) -> Result<&'a Image, ApiError> {
    a.image_by_id_or_slug(id).ok_or_else(ApiError::not_found)
}

/// `PUT /v2/images/{id}` (images_update.yml): `name`; `description` and
/// `distribution` only for custom images ("For custom images, the
/// description and distribution attributes may also be updated"): a
/// snapshot keeps its empty description, whatever is sent.
fn update_image(a: &mut Account, id: &str, body: &Value) -> ApiResult {
    let img = find_image(a, id)?;
    if img.public {
        return Err(forbidden());
    }
    let id = img.id;
    let img = a.images.get_mut(&id).ok_or_else(ApiError::not_found)?;
    if let Some(n) = body.get("name").and_then(Value::as_str) {
        img.name = n.to_owned();
    }
    if img.kind == "custom" {
        if let Some(d) = body.get("description").and_then(Value::as_str) {
            img.description = d.to_owned();
        }
        if let Some(d) = body.get("distribution").and_then(Value::as_str) {
            img.distribution = d.to_owned();
        }
    }
    ok(200, json!({"image": img.json()}))
}

/// `POST /v2/images/{id}/actions` (imageActions_post.yml): `transfer` to a
/// region, taking `transfer_ms` (DO's can take over an hour:
/// packer-plugin-digitalocean #122); 201 with the action.
fn image_action(shared: &Shared, a: &mut Account, id: &str, body: &Value) -> ApiResult {
    let img = find_image(a, id)?;
    if img.public {
        return Err(forbidden());
    }
    let image_id = img.id;
    if body["type"].as_str() != Some("transfer") {
        return Err(ApiError::unprocessable(
            "only the transfer image action is simulated",
        ));
    }
    let region = body["region"].as_str().unwrap_or("").to_owned();
    if !REGIONS.iter().any(|r| r.0 == region) {
        return Err(ApiError::unprocessable("Region is not available"));
    }
    let ms = a.behaviour.transfer_ms.unwrap_or(a.opts.action_ms);
    let act = a.next_id();
    let started = crate::core::util::unix_now();
    let meta = ActionMeta {
        id: act,
        kind: "transfer".into(),
        started_at: super::state::rfc3339(started),
        ends_at: super::state::rfc3339(started + ms.div_ceil(1000)),
        resource_id: image_id,
        resource_type: ResourceType::Image,
        region: region.clone(),
    };
    let fault = a
        .take_action_fault("transfer")
        .then(|| Armed::Fail("transfer failed (simulated)".into()));
    let sh = shared.clone();
    let work = async move {
        let mut a = sh.lock();
        let img = a.images.get_mut(&image_id).ok_or("the image was deleted")?;
        if !img.regions.contains(&region) {
            img.regions.push(region);
        }
        Ok(())
    };
    let start = Start {
        id: act.to_string(),
        meta,
        first_line: format!("transfer {image_id}"),
        duration: Duration::from_millis(ms),
        fault,
    };
    ops::spawn(shared, a, start, work, |_| {});
    ok(201, json!({"action": a.action_json(act)}))
}

// ---- tags --------------------------------------------------------------

/// An existing tag's canonical name for `t` (tags.yml `name`: "Tag names are
/// case stable ... the capitalization you use when you first create a tag is
/// canonical"), or `t` as a new tag.
fn canonical_or_new(a: &mut Account, t: &str) -> String {
    match a.tags.iter().find(|x| x.eq_ignore_ascii_case(t)) {
        Some(c) => c.clone(),
        None => {
            a.tags.insert(t.to_owned());
            t.to_owned()
        }
    }
}

/// `POST /v2/tags` (tags_create.yml): 201; an existing name answers the
/// existing tag (the description lists no conflict answer).
fn create_tag(a: &mut Account, body: &Value) -> ApiResult {
    let name = body["name"].as_str().unwrap_or("");
    let t = canonical_or_new(a, name);
    ok(201, json!({"tag": a.tag_json(&t)}))
}

/// A tag by its canonical name: the URL must use it (tags.yml `name`).
fn find_tag(a: &Account, tag: &str) -> Result<String, ApiError> {
    a.tags.get(tag).cloned().ok_or_else(ApiError::not_found)
}

/// `POST|DELETE /v2/tags/{tag}/resources` (tags_assign_resources.yml): 204;
/// 404 for an unknown tag or resource.
fn tag_resources(a: &mut Account, tag: &str, body: &Value, add: bool) -> ApiResult {
    let t = find_tag(a, tag)?;
    let mut targets = Vec::new();
    for r in body["resources"].as_array().into_iter().flatten() {
        let id = r["resource_id"]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(ApiError::not_found)?;
        let kind = r["resource_type"].as_str().unwrap_or("");
        let exists = match kind {
            "droplet" => a.droplets.contains_key(&id),
            "image" => a.images.get(&id).is_some_and(|i| !i.public),
            _ => {
                return Err(ApiError::unprocessable(format!(
                    "tagging a {kind} is not simulated"
                )))
            }
        };
        if !exists {
            return Err(ApiError::not_found());
        }
        targets.push((kind == "droplet", id));
    }
    for (droplet, id) in targets {
        let tags = if droplet {
            a.droplets.get_mut(&id).map(|d| &mut d.tags)
        } else {
            a.images.get_mut(&id).map(|i| &mut i.tags)
        };
        let Some(tags) = tags else { continue };
        if add {
            if !tags.contains(&t) {
                tags.push(t.clone());
            }
        } else {
            tags.retain(|x| *x != t);
        }
    }
    no_content()
}

impl Account {
    pub fn action_running(&self, id: u64) -> bool {
        self.actions
            .get(&id.to_string())
            .is_some_and(|op| op.outcome.is_none())
    }

    /// Every action's id, oldest first.
    pub fn action_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.actions.ids().filter_map(|i| i.parse().ok()).collect();
        ids.sort_unstable();
        ids
    }
}
