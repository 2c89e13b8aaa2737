//! The Compute Engine calls the simulator serves, on the project state.
//! Requests reach here already checked against compute.v1.json.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use super::filter;
use super::guest;
use super::state::{
    now_ms, AttachedDisk, Backend, Disk, Image, Instance, OpMeta, Project, Serial, Shared,
    PUBLIC_PROJECTS,
};
use super::{qemu, ApiError, ApiResult};
use crate::core::ops::{self, Armed, Start};
use crate::core::spec::Params;
use crate::core::util::random_secret;

pub async fn dispatch(
    shared: &Shared,
    method: &str,
    path: &str,
    params: &Params,
    body: Value,
) -> ApiResult {
    let rel = path.trim_start_matches("/compute/v1/");
    let segs: Vec<&str> = rel.split('/').collect();
    let m = method;
    match segs.as_slice() {
        ["projects", p, "global", "operations", o, "wait"] if m == "POST" => {
            wait(shared, p, None, o).await
        }
        ["projects", p, "zones", z, "operations", o, "wait"] if m == "POST" => {
            wait(shared, p, Some(z), o).await
        }
        _ => {
            let mut st = shared.lock();
            route(shared, &mut st, m, &segs, params, body)
        }
    }
}

fn route(
    shared: &Shared,
    st: &mut Project,
    m: &str,
    segs: &[&str],
    params: &Params,
    body: Value,
) -> ApiResult {
    match (m, segs) {
        ("GET", ["projects", p, "global", "images"]) => {
            project(st, p, false, "list")?;
            list_images(st, p, params)
        }
        ("POST", ["projects", p, "global", "images"]) => {
            project(st, p, true, "create")?;
            insert_image(shared, st, params, body)
        }
        ("GET", ["projects", p, "global", "images", "family", f]) => {
            project(st, p, false, "useReadOnly")?;
            from_family(st, p, f).map(Image::json)
        }
        ("GET", ["projects", p, "global", "images", i]) => {
            project(st, p, false, "get")?;
            image(st, p, i).map(Image::json)
        }
        ("PATCH", ["projects", p, "global", "images", i]) => {
            project(st, p, true, "update")?;
            patch_image(shared, st, i, params, body)
        }
        ("DELETE", ["projects", p, "global", "images", i]) => {
            project(st, p, true, "delete")?;
            delete_image(shared, st, i, params)
        }
        ("POST", ["projects", p, "global", "images", i, "setLabels"]) => {
            project(st, p, true, "setLabels")?;
            set_labels(shared, st, i, body)
        }
        ("GET", ["projects", p, "global", "operations", o]) => {
            project(st, p, false, "get")?;
            get_op(st, p, None, o)
        }
        ("GET", ["projects", p, "zones", z, "operations", o]) => {
            zone(st, p, z)?;
            get_op(st, p, Some(z), o)
        }
        ("POST", ["projects", p, "zones", z, "instances"]) => {
            zone(st, p, z)?;
            insert_instance(shared, st, params, body)
        }
        ("GET", ["projects", p, "zones", z, "instances"]) => {
            zone(st, p, z)?;
            list_instances(st, params)
        }
        ("GET", ["projects", p, "zones", z, "instances", i]) => {
            zone(st, p, z)?;
            instance(st, i).map(|x| x.json(&st.opts))
        }
        ("DELETE", ["projects", p, "zones", z, "instances", i]) => {
            zone(st, p, z)?;
            delete_instance(shared, st, i, params)
        }
        ("POST", ["projects", p, "zones", z, "instances", i, "stop"]) => {
            zone(st, p, z)?;
            stop_instance(shared, st, i, params)
        }
        ("GET", ["projects", p, "zones", z, "instances", i, "serialPort"]) => {
            zone(st, p, z)?;
            serial(st, i, params)
        }
        ("GET", ["projects", p, "zones", z, "disks"]) => {
            zone(st, p, z)?;
            list_disks(st, params)
        }
        ("GET", ["projects", p, "zones", z, "disks", d]) => {
            zone(st, p, z)?;
            disk(st, d).map(|x| x.json(&st.opts))
        }
        ("DELETE", ["projects", p, "zones", z, "disks", d]) => {
            zone(st, p, z)?;
            delete_disk(shared, st, d, params)
        }
        _ => Err(ApiError::new(
            501,
            "notImplemented",
            format!(
                "{m} /compute/v1/{} is in Compute Engine's API but not simulated",
                segs.join("/")
            ),
        )),
    }
}

// ---- scope ----

/// Our project: anything; a public image project: reads; else 404.
fn project(st: &Project, p: &str, write: bool, verb: &str) -> Result<(), ApiError> {
    if p == st.opts.project {
        return Ok(());
    }
    if PUBLIC_PROJECTS.contains(&p) {
        if !write {
            return Ok(());
        }
        return Err(ApiError::new(
            403,
            "forbidden",
            format!("Required 'compute.images.{verb}' permission for 'projects/{p}'"),
        ));
    }
    Err(ApiError::not_found(&format!("projects/{p}")))
}

fn zone(st: &Project, p: &str, z: &str) -> Result<(), ApiError> {
    project(st, p, true, "get")?;
    if z != st.opts.zone {
        return Err(ApiError::not_found(&format!("projects/{p}/zones/{z}")));
    }
    Ok(())
}

fn image<'a>(st: &'a Project, p: &str, name: &str) -> Result<&'a Image, ApiError> {
    st.images
        .get(&(p.to_owned(), name.to_owned()))
        .ok_or_else(|| ApiError::not_found(&format!("projects/{p}/global/images/{name}")))
}

fn instance<'a>(st: &'a Project, name: &str) -> Result<&'a Instance, ApiError> {
    st.instances
        .get(name)
        .ok_or_else(|| ApiError::not_found(&format!("{}/instances/{name}", st.zone_path())))
}

fn disk<'a>(st: &'a Project, name: &str) -> Result<&'a Disk, ApiError> {
    st.disks
        .get(name)
        .ok_or_else(|| ApiError::not_found(&format!("{}/disks/{name}", st.zone_path())))
}

fn param<'a>(params: &'a Params, k: &str) -> Option<&'a str> {
    params.get(k).and_then(|v| v.first()).map(String::as_str)
}

/// "The disk resource '<disk>' is already being used by '<user>'" (400
/// `resourceInUseByAnotherResource`; the wording in ansible/ansible#61634).
fn in_use(disk: &str, by: &str) -> ApiError {
    ApiError::new(
        400,
        "resourceInUseByAnotherResource",
        format!("The disk resource '{disk}' is already being used by '{by}'"),
    )
}

// ---- operations ----

/// A replayed `requestId`: the operation the first request started. The id
/// "must be a valid UUID with the exception that zero UUID is not
/// supported" (every compute.v1 `requestId` parameter).
fn replay(st: &mut Project, params: &Params) -> Result<Option<Value>, ApiError> {
    let Some(rid) = param(params, "requestId") else {
        return Ok(None);
    };
    let uuid = rid.len() == 36
        && rid.char_indices().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    if !uuid || rid.chars().all(|c| c == '0' || c == '-') {
        return Err(ApiError::invalid(
            "requestId",
            rid,
            "The request ID must be a valid UUID with the exception that zero UUID is not supported (00000000-0000-0000-0000-000000000000).",
        ));
    }
    st.prune_request_ids();
    Ok(st
        .request_ids
        .get(rid)
        .and_then(|(name, _)| st.op_json(name)))
}

/// GCE's operation names: `operation-<ms>-<13 hex>-<8 hex>-<8 hex>`.
fn op_name() -> String {
    let a = random_secret().replace('-', "");
    let b = random_secret().replace('-', "");
    format!(
        "operation-{}-{}-{}-{}",
        now_ms(),
        &a[..13],
        &a[13..21],
        &b[..8]
    )
}

struct OpSpec<'a> {
    zonal: bool,
    op_type: &'a str,
    target: String,
    target_id: u64,
}

fn start_op<W, R>(
    shared: &Shared,
    st: &mut Project,
    spec: OpSpec<'_>,
    params: &Params,
    work: W,
    rollback: R,
) -> ApiResult
where
    W: std::future::Future<Output = Result<(), String>> + Send + 'static,
    R: FnOnce(&mut Project) + Send + 'static,
{
    let failure = st.take_op_fault(spec.op_type, &spec.target);
    let name = op_name();
    let id = st.next_id();
    let meta = OpMeta {
        id,
        name: name.clone(),
        zonal: spec.zonal,
        op_type: spec.op_type.to_owned(),
        target_link: spec.target.clone(),
        target_id: spec.target_id,
        user: st.account.client_email.clone(),
        insert_ms: now_ms(),
        started: Instant::now(),
        duration: Duration::from_millis(op_ms(st, &spec)),
        error_code: failure.as_ref().map(|f| f.code.clone()),
        http_error: failure.as_ref().map(|f| f.http_status),
    };
    let duration = meta.duration;
    ops::spawn(
        shared,
        st,
        Start {
            id: name.clone(),
            meta,
            first_line: format!("{} {}", spec.op_type, spec.target),
            duration,
            fault: failure.map(|f| Armed::Fail(f.message)),
        },
        work,
        rollback,
    );
    if let Some(rid) = param(params, "requestId") {
        st.request_ids
            .insert(rid.to_owned(), (name.clone(), Instant::now()));
    }
    st.op_json(&name)
        .ok_or_else(|| ApiError::new(500, "internalError", "operation lost"))
}

/// How long an operation runs: `PUT /_sim/behaviour {"op_ms": {"images.insert":
/// 30000}}` for its method (`<collection>.<operationType>`: `images.insert`,
/// `images.setLabels`, `instances.stop`, `disks.delete`, ...), else `--op-ms`.
fn op_ms(st: &Project, spec: &OpSpec<'_>) -> u64 {
    let collection = spec.target.rsplit('/').nth(1).unwrap_or("");
    st.behaviour
        .op_ms
        .get(&format!("{collection}.{}", spec.op_type))
        .copied()
        .unwrap_or(st.opts.op_ms)
}

fn get_op(st: &Project, p: &str, z: Option<&str>, o: &str) -> ApiResult {
    let path = match z {
        Some(z) => format!("projects/{p}/zones/{z}/operations/{o}"),
        None => format!("projects/{p}/global/operations/{o}"),
    };
    match st.ops.get(o) {
        Some(op) if op.meta.zonal == z.is_some() => {
            st.op_json(o).ok_or_else(|| ApiError::not_found(&path))
        }
        _ => Err(ApiError::not_found(&path)),
    }
}

/// `operations.wait`: until `DONE` or the cap (GCE: 2 minutes), then the
/// operation as it is.
async fn wait(shared: &Shared, p: &str, z: Option<&str>, o: &str) -> ApiResult {
    let cap = {
        let st = shared.lock();
        match z {
            Some(z) => zone(&st, p, z)?,
            None => project(&st, p, false, "get")?,
        }
        get_op(&st, p, z, o)?;
        st.behaviour.wait_cap
    };
    let until = Instant::now() + cap;
    loop {
        {
            let st = shared.lock();
            if st.op_done(o) || Instant::now() >= until {
                return get_op(&st, p, z, o);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- labels and names ----

/// Label rules (GCE "Labels" requirements): at most 64; keys
/// `[a-z][a-z0-9_-]{0,62}`, values `[a-z0-9_-]{0,63}` (international
/// letters aside).
fn check_labels(field: &str, labels: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if labels.len() > 64 {
        return Err(ApiError::invalid(
            field,
            "",
            "Resource has too many labels (64 at most).",
        ));
    }
    let ok = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    };
    for (k, v) in labels {
        let key_ok = k.len() <= 63 && k.starts_with(|c: char| c.is_ascii_lowercase()) && ok(k);
        if !key_ok {
            return Err(ApiError::invalid(field, "", &format!("Label key '{k}' violates format constraints. The key must start with a lowercase character, can only contain lowercase letters, numeric characters, underscores and dashes. The key can be at most 63 characters long. International characters are allowed.")));
        }
        if v.len() > 63 || !ok(v) {
            return Err(ApiError::invalid(field, "", &format!("Label value '{v}' violates format constraints. The value can only contain lowercase letters, numeric characters, underscores and dashes. The value can be at most 63 characters long. International characters are allowed.")));
        }
    }
    Ok(())
}

/// Names: RFC 1035, 63 characters (`[a-z]([-a-z0-9]*[a-z0-9])?`).
fn check_name(field: &str, name: &str) -> Result<(), ApiError> {
    let ok = name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            name,
            "Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'",
        ))
    }
}

/// `projects/p/...` from a full or partial resource URL.
fn rel_url(url: &str) -> &str {
    match url.find("projects/") {
        Some(i) => &url[i..],
        None => url.trim_start_matches('/'),
    }
}

// ---- images ----

fn list_images(st: &Project, p: &str, params: &Params) -> ApiResult {
    let items = st.images.values().filter(|i| i.project == p);
    let collection = format!("projects/{p}/global/images");
    list(params, "compute#imageList", &collection, items, Image::json)
}

fn list_instances(st: &Project, params: &Params) -> ApiResult {
    let collection = format!("{}/instances", st.zone_path());
    list(
        params,
        "compute#instanceList",
        &collection,
        st.instances.values(),
        |i| i.json(&st.opts),
    )
}

fn list_disks(st: &Project, params: &Params) -> ApiResult {
    let collection = format!("{}/disks", st.zone_path());
    list(
        params,
        "compute#diskList",
        &collection,
        st.disks.values(),
        |d| d.json(&st.opts),
    )
}

/// What `list` needs of a resource: its filterable fields and labels, and
/// its place in `creationTimestamp desc` order.
pub trait Listed {
    /// The fields a filter may name besides `labels.<key>`.
    const FIELDS: &'static [&'static str];
    /// `name`, `status` and the like, as the filter compares them; a field
    /// the resource has but leaves unset is present with `None`.
    fn fields(&self) -> Vec<(&'static str, Option<String>)>;
    fn labels(&self) -> &BTreeMap<String, String>;
    fn created(&self) -> (u64, u64);
}

impl Listed for Image {
    const FIELDS: &'static [&'static str] = &["name", "status", "family"];
    fn fields(&self) -> Vec<(&'static str, Option<String>)> {
        vec![
            ("name", Some(self.name.clone())),
            ("status", Some(self.status.to_owned())),
            ("family", self.family.clone()),
        ]
    }
    fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }
    fn created(&self) -> (u64, u64) {
        (self.created_ms, self.seq)
    }
}

impl Listed for Instance {
    const FIELDS: &'static [&'static str] = &["name", "status"];
    fn fields(&self) -> Vec<(&'static str, Option<String>)> {
        vec![
            ("name", Some(self.name.clone())),
            ("status", Some(self.status.to_owned())),
        ]
    }
    fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }
    fn created(&self) -> (u64, u64) {
        (self.created_ms, self.id)
    }
}

impl Listed for Disk {
    const FIELDS: &'static [&'static str] = &["name", "status"];
    fn fields(&self) -> Vec<(&'static str, Option<String>)> {
        vec![
            ("name", Some(self.name.clone())),
            ("status", Some("READY".to_owned())),
        ]
    }
    fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }
    fn created(&self) -> (u64, u64) {
        (self.created_ms, self.id)
    }
}

/// A `list` call (`images.list`, `instances.list`, `disks.list`): the
/// `filter` subset (`super::filter`), `maxResults` 0..500 (default and 0:
/// 500), `orderBy` `name` (the default) or `creationTimestamp desc`,
/// `pageToken`/`nextPageToken` (absent on the last page), no `items` key
/// when nothing matched. `items` come in name order (the maps' order).
fn list<'a, T: Listed + 'a>(
    params: &Params,
    kind: &str,
    collection: &str,
    all: impl Iterator<Item = &'a T>,
    render: impl Fn(&T) -> Value,
) -> ApiResult {
    let text = param(params, "filter").unwrap_or("");
    let invalid = || ApiError::invalid("filter", text, "Invalid list filter expression.");
    let terms = filter::parse(text).map_err(|()| invalid())?;
    // "Acceptable values are 0 to 500, inclusive. (Default: 500)"
    // (every list method's `maxResults`; the document states no maximum).
    let max = match param(params, "maxResults").map(str::parse::<usize>) {
        Some(Ok(0)) | None | Some(Err(_)) => 500,
        Some(Ok(n)) if n > 500 => {
            return Err(ApiError::invalid(
                "maxResults",
                &n.to_string(),
                "Must be less than or equal to 500",
            ))
        }
        Some(Ok(n)) => n,
    };
    // A field this kind of resource does not have (`family` of an
    // instance): refused like any filter the subset cannot read.
    let unknown = terms.iter().any(|t| match t {
        filter::Term::Equals(f, _) => !f.starts_with("labels.") && !T::FIELDS.contains(&f.as_str()),
        filter::Term::Has(_) => false,
    });
    if unknown {
        return Err(invalid());
    }
    let mut items: Vec<&T> = Vec::new();
    for r in all {
        let fields: BTreeMap<&str, String> = r
            .fields()
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?)))
            .collect();
        if filter::matches(&terms, &fields, r.labels()) {
            items.push(r);
        }
    }
    match param(params, "orderBy") {
        None | Some("name") => {}
        Some("creationTimestamp desc") => items.sort_by_key(|i| std::cmp::Reverse(i.created())),
        Some(o) => {
            return Err(ApiError::invalid(
                "orderBy",
                o,
                "Sorting is only supported by name or creationTimestamp desc.",
            ))
        }
    }
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let tag = format!("{collection}/{text}");
    let offset = match param(params, "pageToken") {
        None | Some("") => 0,
        Some(t) => b64
            .decode(t)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| {
                let (t, n) = s.rsplit_once(':')?;
                (t == tag).then(|| n.parse::<usize>().ok())?
            })
            .ok_or_else(|| ApiError::invalid("pageToken", t, "Invalid page token."))?,
    };
    let page: Vec<Value> = items
        .iter()
        .skip(offset)
        .take(max)
        .map(|i| render(i))
        .collect();
    let mut v = json!({
        "kind": kind,
        "id": collection,
        "selfLink": format!("{}{collection}", super::state::LINK_BASE),
    });
    if !page.is_empty() {
        v["items"] = json!(page);
    }
    if offset + max < items.len() {
        v["nextPageToken"] = json!(b64.encode(format!("{tag}:{}", offset + max)));
    }
    Ok(v)
}

/// The newest (creationTimestamp) READY image of the family that is not
/// deprecated (images.getFromFamily, compute.v1.json: "Returns the latest
/// image that is part of an image family and is not deprecated").
fn from_family<'a>(st: &'a Project, p: &str, family: &str) -> Result<&'a Image, ApiError> {
    st.images
        .values()
        .filter(|i| i.project == p && i.family.as_deref() == Some(family))
        .filter(|i| i.status == "READY" && i.deprecated_state() == "ACTIVE")
        .max_by_key(|i| (i.created_ms, i.seq))
        .ok_or_else(|| ApiError::not_found(&format!("projects/{p}/global/images/family/{family}")))
}

/// An image or `family/` URL, ours or a public project's.
fn resolve_image<'a>(st: &'a Project, url: &str) -> Result<&'a Image, ApiError> {
    let rel = rel_url(url);
    let rel = if rel.starts_with("global/") {
        format!("projects/{}/{rel}", st.opts.project)
    } else {
        rel.to_owned()
    };
    let segs: Vec<&str> = rel.split('/').collect();
    let img = match segs.as_slice() {
        ["projects", p, "global", "images", "family", f] => from_family(st, p, f)?,
        ["projects", p, "global", "images", i] => image(st, p, i)?,
        _ => {
            return Err(ApiError::invalid(
                "resource.disks[0].initializeParams.sourceImage",
                url,
                "Must be an image URL.",
            ))
        }
    };
    if img.status != "READY" {
        return Err(ApiError::new(
            400,
            "resourceNotReady",
            format!("The resource '{}' is not ready", img.path()),
        ));
    }
    Ok(img)
}

fn insert_image(shared: &Shared, st: &mut Project, params: &Params, body: Value) -> ApiResult {
    if let Some(op) = replay(st, params)? {
        return Ok(op);
    }
    let name = body["name"].as_str().unwrap_or("").to_owned();
    check_name("resource.name", &name)?;
    let labels = Project::labels_map(&body["labels"]);
    check_labels("resource.labels", &labels)?;
    let project = st.opts.project.clone();
    let path = format!("projects/{project}/global/images/{name}");
    if st.images.contains_key(&(project.clone(), name.clone())) {
        return Err(ApiError::already_exists(&path));
    }
    let Some(source) = body["sourceDisk"].as_str() else {
        return Err(ApiError::invalid(
            "resource.sourceDisk",
            "",
            "The simulator makes images from a sourceDisk only.",
        ));
    };
    let rel = rel_url(source);
    let rel = if rel.starts_with("zones/") {
        format!("projects/{project}/{rel}")
    } else {
        rel.to_owned()
    };
    let disk_name = match rel.split('/').collect::<Vec<_>>().as_slice() {
        ["projects", p, "zones", z, "disks", d] if *p == project && *z == st.opts.zone => {
            (*d).to_owned()
        }
        _ => return Err(ApiError::not_found(&rel)),
    };
    let force = param(params, "forceCreate") == Some("true");
    let d = disk(st, &disk_name)?;
    let disk_path = format!("{}/disks/{disk_name}", st.zone_path());
    if let Some(by) = &d.imaging {
        return Err(in_use(&disk_path, by));
    }
    let qemu_backend = st.opts.backend == Backend::Qemu;
    if !force || qemu_backend {
        for u in &d.users {
            let name = u.rsplit('/').next().unwrap_or("");
            if st
                .instances
                .get(name)
                .is_some_and(|i| i.status != "TERMINATED")
            {
                if force {
                    return Err(ApiError::new(
                        400,
                        "resourceInUseByAnotherResource",
                        format!("The disk resource '{disk_path}' is already being used by '{u}': the simulator's QEMU backend images the disks of TERMINATED instances only, forceCreate or not"),
                    ));
                }
                return Err(in_use(&disk_path, u));
            }
        }
    }
    let (fs, size, disk_id) = (d.fs.clone(), d.size_gb, d.id);
    let id = st.next_id();
    let seq = st.next_seq();
    st.images.insert(
        (project.clone(), name.clone()),
        Image {
            project: project.clone(),
            name: name.clone(),
            id,
            created_ms: now_ms(),
            seq,
            description: body["description"].as_str().map(str::to_owned),
            family: body["family"].as_str().map(str::to_owned),
            labels,
            status: "PENDING",
            source_disk: Some((disk_path.clone(), disk_id)),
            disk_size_gb: size,
            deprecated: None,
            fs,
            file: None,
        },
    );
    if let Some(d) = st.disks.get_mut(&disk_name) {
        d.imaging = Some(path.clone());
    }
    let key = (project, name);
    let (s2, k2, d2) = (shared.clone(), key.clone(), disk_name.clone());
    let work = async move {
        let file = if qemu_backend {
            Some(qemu::flatten_disk(&s2, &d2, id).await?)
        } else {
            None
        };
        let mut st = s2.lock();
        match st.images.get_mut(&k2) {
            Some(i) if i.id == id => {
                i.status = "READY";
                i.file = file;
            }
            // Deleted while it was being made.
            _ => {
                if let Some(f) = file {
                    let _ = std::fs::remove_file(f);
                }
            }
        }
        if let Some(d) = st.disks.get_mut(&d2) {
            d.imaging = None;
        }
        Ok(())
    };
    let rollback = move |st: &mut Project| {
        st.images.remove(&key);
        if let Some(d) = st.disks.get_mut(&disk_name) {
            d.imaging = None;
        }
    };
    let spec = OpSpec {
        zonal: false,
        op_type: "insert",
        target: path,
        target_id: id,
    };
    start_op(shared, st, spec, params, work, rollback)
}

/// `images.patch`: "Only the following fields can be modified: family,
/// description, deprecation status" (compute.v1.json). Other fields may be
/// sent back unchanged (a read-modify-write client does); a changed one is
/// refused.
fn patch_image(
    shared: &Shared,
    st: &mut Project,
    name: &str,
    params: &Params,
    body: Value,
) -> ApiResult {
    if let Some(op) = replay(st, params)? {
        return Ok(op);
    }
    let project = st.opts.project.clone();
    let current = image(st, &project, name)?.json();
    let Some(fields) = body.as_object() else {
        return Err(ApiError::invalid(
            "resource",
            "",
            "The patch must be an object.",
        ));
    };
    for (k, v) in fields {
        if matches!(k.as_str(), "family" | "description" | "deprecated") {
            continue;
        }
        let same = current.get(k) == Some(v)
            || (k == "labels"
                && v.as_object().is_some_and(|o| o.is_empty())
                && current.get(k).is_none());
        if !same {
            return Err(ApiError::invalid(
                &format!("resource.{k}"),
                &v.to_string().chars().take(80).collect::<String>(),
                "Only family, description and deprecation status can be patched.",
            ));
        }
    }
    if let Some(f) = body["family"].as_str() {
        if !f.is_empty() {
            check_name("resource.family", f)?;
        }
    }
    let img = image(st, &project, name)?;
    let (path, id) = (img.path(), img.id);
    let key = (project, name.to_owned());
    let s2 = shared.clone();
    let work = async move {
        let mut st = s2.lock();
        if let Some(i) = st.images.get_mut(&key) {
            if let Some(f) = body.get("family") {
                i.family = f.as_str().filter(|f| !f.is_empty()).map(str::to_owned);
            }
            if let Some(d) = body.get("description") {
                i.description = d.as_str().map(str::to_owned);
            }
            if let Some(d) = body.get("deprecated") {
                let active = d.get("state").is_none_or(|s| s == "ACTIVE");
                i.deprecated = (!active).then(|| d.clone());
            }
        }
        Ok(())
    };
    let spec = OpSpec {
        zonal: false,
        op_type: "patch",
        target: path,
        target_id: id,
    };
    start_op(shared, st, spec, params, work, |_| {})
}

/// `images.setLabels`: `labelFingerprint` must be the current one, else 412
/// `conditionNotMet` "Labels fingerprint either invalid or resource labels
/// have changed" (GCE's answer; compute.v1.json: "Make a get() request to
/// the resource to get the latest fingerprint").
fn set_labels(shared: &Shared, st: &mut Project, name: &str, body: Value) -> ApiResult {
    let project = st.opts.project.clone();
    let img = image(st, &project, name)?;
    let Some(given) = body["labelFingerprint"].as_str() else {
        return Err(ApiError::new(
            400,
            "required",
            "Required field 'labelFingerprint' not specified",
        ));
    };
    if given != super::state::fingerprint(&img.labels) {
        return Err(ApiError::new(
            412,
            "conditionNotMet",
            "Labels fingerprint either invalid or resource labels have changed",
        ));
    }
    let labels = Project::labels_map(&body["labels"]);
    check_labels("labels", &labels)?;
    let (path, id) = (img.path(), img.id);
    let key = (project, name.to_owned());
    let old = img.labels.clone();
    if let Some(i) = st.images.get_mut(&key) {
        i.labels = labels;
    }
    let rollback = move |st: &mut Project| {
        if let Some(i) = st.images.get_mut(&key) {
            i.labels = old;
        }
    };
    let spec = OpSpec {
        zonal: false,
        op_type: "setLabels",
        target: path,
        target_id: id,
    };
    start_op(shared, st, spec, &Params::new(), async { Ok(()) }, rollback)
}

fn delete_image(shared: &Shared, st: &mut Project, name: &str, params: &Params) -> ApiResult {
    if let Some(op) = replay(st, params)? {
        return Ok(op);
    }
    let project = st.opts.project.clone();
    let img = image(st, &project, name)?;
    let (path, id) = (img.path(), img.id);
    let key = (project, name.to_owned());
    let s2 = shared.clone();
    let k2 = key.clone();
    let work = async move {
        let mut st = s2.lock();
        if let Some(img) = st.images.remove(&k2) {
            qemu::image_removed(&mut st, &img);
        }
        Ok(())
    };
    let spec = OpSpec {
        zonal: false,
        op_type: "delete",
        target: path,
        target_id: id,
    };
    start_op(shared, st, spec, params, work, |_| {})
}

// ---- instances ----

fn insert_instance(shared: &Shared, st: &mut Project, params: &Params, body: Value) -> ApiResult {
    if let Some(op) = replay(st, params)? {
        return Ok(op);
    }
    let name = body["name"].as_str().unwrap_or("").to_owned();
    check_name("resource.name", &name)?;
    let zone_path = st.zone_path();
    let path = format!("{zone_path}/instances/{name}");
    if st.instances.contains_key(&name) {
        return Err(ApiError::already_exists(&path));
    }
    let labels = Project::labels_map(&body["labels"]);
    check_labels("resource.labels", &labels)?;
    let machine_type = body["machineType"]
        .as_str()
        .and_then(|m| m.rsplit('/').next())
        .unwrap_or("")
        .to_owned();
    let empty = Vec::new();
    let disks_in = body["disks"].as_array().unwrap_or(&empty);
    if disks_in.len() != 1 || !disks_in[0]["boot"].as_bool().unwrap_or(disks_in.len() == 1) {
        return Err(ApiError::invalid(
            "resource.disks",
            "",
            "The simulator takes exactly one boot disk with initializeParams.",
        ));
    }
    let d = &disks_in[0];
    let init = &d["initializeParams"];
    let Some(source) = init["sourceImage"].as_str() else {
        return Err(ApiError::invalid(
            "resource.disks[0].initializeParams.sourceImage",
            "",
            "A boot disk needs a sourceImage in the simulator.",
        ));
    };
    let img = resolve_image(st, source)?;
    let backing = match st.opts.backend {
        Backend::Instant => None,
        Backend::Qemu => Some(qemu::image_file(img).map_err(|why| {
            ApiError::invalid(
                "resource.disks[0].initializeParams.sourceImage",
                source,
                &why,
            )
        })?),
    };
    let (fs, img_size, img_ref) = (img.fs.clone(), img.disk_size_gb, (img.path(), img.id));
    let disk_name = init["diskName"].as_str().unwrap_or(&name).to_owned();
    if st.disks.contains_key(&disk_name) {
        return Err(ApiError::already_exists(&format!(
            "{zone_path}/disks/{disk_name}"
        )));
    }
    let disk_labels = Project::labels_map(&init["labels"]);
    check_labels("resource.disks[0].initializeParams.labels", &disk_labels)?;
    let size = init["diskSizeGb"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| init["diskSizeGb"].as_u64())
        .unwrap_or(img_size);
    if size < img_size {
        return Err(ApiError::invalid(
            "resource.disks[0].initializeParams.diskSizeGb",
            &size.to_string(),
            &format!("Requested disk size cannot be smaller than the image size ({img_size} GB)"),
        ));
    }
    let metadata: Vec<(String, String)> = body["metadata"]["items"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|i| {
            (
                i["key"].as_str().unwrap_or("").to_owned(),
                i["value"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let network = body["networkInterfaces"][0]["network"]
        .as_str()
        .map(|n| rel_url(n).to_owned())
        .unwrap_or_else(|| format!("projects/{}/global/networks/default", st.opts.project));
    let disk_id = st.next_id();
    let disk_file = backing.as_ref().map(|_| qemu::disk_file(&st.opts, disk_id));
    st.disks.insert(
        disk_name.clone(),
        Disk {
            name: disk_name.clone(),
            id: disk_id,
            created_ms: now_ms(),
            size_gb: size,
            source_image: Some(img_ref),
            labels: disk_labels,
            users: vec![path.clone()],
            imaging: None,
            fs,
            file: disk_file,
            backing,
        },
    );
    let id = st.next_id();
    let n = st.instances.len() + 2;
    st.instances.insert(
        name.clone(),
        Instance {
            name: name.clone(),
            id,
            created_ms: now_ms(),
            status: "PROVISIONING",
            machine_type,
            disks: vec![AttachedDisk {
                disk: disk_name.clone(),
                device_name: d["deviceName"].as_str().unwrap_or(&disk_name).to_owned(),
                boot: true,
                // The API's default (AttachedDisk.autoDelete); gcloud's is true.
                auto_delete: d["autoDelete"].as_bool().unwrap_or(false),
            }],
            metadata,
            metadata_fingerprint: super::state::fingerprint(&BTreeMap::from([(
                "id".to_owned(),
                id.to_string(),
            )])),
            labels,
            network,
            ip: format!("10.128.0.{n}"),
            serial: Serial::default(),
            last_start_ms: None,
            last_stop_ms: None,
            deleting: false,
            guest: None,
        },
    );
    let s2 = shared.clone();
    let n2 = name.clone();
    let op_ms = st.opts.op_ms;
    let qemu_backend = st.opts.backend == Backend::Qemu;
    let work = async move {
        if qemu_backend {
            return qemu::create(&s2, &n2).await;
        }
        let power_off = {
            let mut guard = s2.lock();
            let st = &mut *guard;
            let Some(inst) = st.instances.get_mut(&n2) else {
                return Ok(());
            };
            inst.status = "RUNNING";
            inst.last_start_ms = Some(now_ms());
            if st.behaviour.hung_guests {
                return Ok(());
            }
            let ud = inst.metadata_value("user-data").map(str::to_owned);
            let script = inst.metadata_value("startup-script").map(str::to_owned);
            let boot_disk = inst.disks[0].disk.clone();
            let Some(disk) = st.disks.get_mut(&boot_disk) else {
                return Ok(());
            };
            let off = guest::boot(
                &mut disk.fs,
                &mut inst.serial,
                &n2,
                ud.as_deref(),
                script.as_deref(),
            );
            off && !st.behaviour.never_power_off
        };
        if power_off {
            let s3 = s2.clone();
            tokio::spawn(async move { power_off_later(s3, n2, op_ms).await });
        }
        Ok(())
    };
    let rollback = move |st: &mut Project| {
        if let Some(g) = qemu::take_guest(st, &name) {
            g.kill_soon();
        }
        if let Some(i) = st.instances.remove(&name) {
            qemu::instance_removed(st, &i);
        }
        if let Some(d) = st.disks.remove(&disk_name) {
            qemu::disk_removed(st, &d);
        }
    };
    let spec = OpSpec {
        zonal: true,
        op_type: "insert",
        target: path,
        target_id: id,
    };
    start_op(shared, st, spec, params, work, rollback)
}

/// A guest that powered itself off: `STOPPING`, then `TERMINATED`.
async fn power_off_later(shared: Shared, name: String, op_ms: u64) {
    tokio::time::sleep(Duration::from_millis(op_ms / 2)).await;
    if let Some(i) = shared.lock().instances.get_mut(&name) {
        if i.status == "RUNNING" {
            i.status = "STOPPING";
        }
    }
    tokio::time::sleep(Duration::from_millis(op_ms / 2)).await;
    if let Some(i) = shared.lock().instances.get_mut(&name) {
        if i.status == "STOPPING" {
            i.status = "TERMINATED";
            i.last_stop_ms = Some(now_ms());
        }
    }
}

fn stop_instance(shared: &Shared, st: &mut Project, name: &str, params: &Params) -> ApiResult {
    if let Some(op) = replay(st, params)? {
        return Ok(op);
    }
    let inst = instance(st, name)?;
    let (path, id, was) = (
        format!("{}/instances/{name}", st.zone_path()),
        inst.id,
        inst.status,
    );
    if let Some(i) = st.instances.get_mut(name) {
        if i.status != "TERMINATED" {
            i.status = "STOPPING";
        }
    }
    let (s2, n2, n3) = (shared.clone(), name.to_owned(), name.to_owned());
    let qemu_backend = st.opts.backend == Backend::Qemu;
    let work = async move {
        if qemu_backend {
            return qemu::stop(&s2, &n2).await;
        }
        if let Some(i) = s2.lock().instances.get_mut(&n2) {
            if i.status != "TERMINATED" {
                i.last_stop_ms = Some(now_ms());
            }
            i.status = "TERMINATED";
        }
        Ok(())
    };
    let rollback = move |st: &mut Project| {
        if let Some(i) = st.instances.get_mut(&n3) {
            i.status = was;
        }
    };
    let spec = OpSpec {
        zonal: true,
        op_type: "stop",
        target: path,
        target_id: id,
    };
    start_op(shared, st, spec, params, work, rollback)
}

fn delete_instance(shared: &Shared, st: &mut Project, name: &str, params: &Params) -> ApiResult {
    if let Some(op) = replay(st, params)? {
        return Ok(op);
    }
    let inst = instance(st, name)?;
    let zone_path = st.zone_path();
    for a in inst.disks.iter().filter(|a| a.auto_delete) {
        if let Some(by) = st.disks.get(&a.disk).and_then(|d| d.imaging.as_ref()) {
            return Err(in_use(&format!("{zone_path}/disks/{}", a.disk), by));
        }
    }
    let (path, id) = (format!("{zone_path}/instances/{name}"), inst.id);
    if let Some(i) = st.instances.get_mut(name) {
        i.status = "STOPPING";
        i.deleting = true;
    }
    let (s2, n2) = (shared.clone(), name.to_owned());
    let p2 = path.clone();
    let work = async move {
        let guest = qemu::take_guest(&mut s2.lock(), &n2);
        if let Some(g) = guest {
            g.kill().await;
        }
        let mut st = s2.lock();
        if let Some(i) = st.instances.remove(&n2) {
            qemu::instance_removed(&st, &i);
            for a in i.disks {
                if a.auto_delete {
                    if let Some(d) = st.disks.remove(&a.disk) {
                        qemu::disk_removed(&mut st, &d);
                    }
                } else if let Some(d) = st.disks.get_mut(&a.disk) {
                    d.users.retain(|u| *u != p2);
                }
            }
        }
        Ok(())
    };
    let spec = OpSpec {
        zonal: true,
        op_type: "delete",
        target: path,
        target_id: id,
    };
    start_op(shared, st, spec, params, work, |_| {})
}

/// `getSerialPortOutput`: port 1 is the console (the others are empty
/// here); positions are absolute bytes, the ring keeps the last 1 MB.
/// Output is "available only when the VM instance is running"
/// (terraform-provider-google `google_compute_instance_serial_port`): a
/// TERMINATED instance's is refused.
fn serial(st: &Project, name: &str, params: &Params) -> ApiResult {
    let inst = instance(st, name)?;
    let path = format!("{}/instances/{name}", st.zone_path());
    if inst.status == "TERMINATED" {
        return Err(ApiError::new(
            400,
            "resourceNotReady",
            format!("The resource '{path}' is not ready"),
        ));
    }
    let port = param(params, "port")
        .and_then(|p| p.parse::<u8>().ok())
        .unwrap_or(1);
    let start = param(params, "start")
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(0);
    let (bytes, from, next) = if port == 1 {
        inst.serial.read(start)
    } else {
        (Vec::new(), 0, 0)
    };
    Ok(json!({
        "kind": "compute#serialPortOutput",
        "contents": String::from_utf8_lossy(&bytes),
        "start": from.to_string(),
        "next": next.to_string(),
        "selfLink": format!("{}{path}", super::state::LINK_BASE),
    }))
}

fn delete_disk(shared: &Shared, st: &mut Project, name: &str, params: &Params) -> ApiResult {
    if let Some(op) = replay(st, params)? {
        return Ok(op);
    }
    let d = disk(st, name)?;
    let path = format!("{}/disks/{name}", st.zone_path());
    if let Some(by) = d.imaging.as_ref().or(d.users.first()) {
        return Err(in_use(&path, by));
    }
    let id = d.id;
    let (s2, n2) = (shared.clone(), name.to_owned());
    let work = async move {
        let mut st = s2.lock();
        if let Some(d) = st.disks.remove(&n2) {
            qemu::disk_removed(&mut st, &d);
        }
        Ok(())
    };
    let spec = OpSpec {
        zonal: true,
        op_type: "delete",
        target: path,
        target_id: id,
    };
    start_op(shared, st, spec, params, work, |_| {})
}
