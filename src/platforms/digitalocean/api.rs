//! The DigitalOcean API calls golden makes, from the OpenAPI description
//! (`../shared/specs/digitalocean/`), with their paths built here and
//! nowhere else. Every call is a thin typed wrapper; waiting for actions
//! lives in `mod.rs` (`wait_action`).

use serde::Deserialize;
use serde_json::{json, Value};

use super::client::{Client, Params};
use crate::lifecycle::context::Cx;
use crate::platforms::{Error, ErrorKind, Result};

/// A droplet as `GET /v2/droplets/{id}` shows it (the fields golden reads).
#[derive(Debug, Clone, Deserialize)]
pub struct Droplet {
    pub id: u64,
    #[serde(default)]
    pub name: String,
    /// `new`, `active`, `off`, `archive`.
    pub status: String,
    #[serde(default)]
    pub locked: bool,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub networks: Networks,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Networks {
    #[serde(default)]
    pub v4: Vec<NetworkV4>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NetworkV4 {
    pub ip_address: String,
    #[serde(rename = "type")]
    pub kind: String,
}

impl Droplet {
    /// The public IPv4 address, once DO assigned one.
    pub fn public_ipv4(&self) -> Option<&str> {
        self.networks
            .v4
            .iter()
            .find(|n| n.kind == "public")
            .map(|n| n.ip_address.as_str())
    }
}

/// An action (`{"action": {...}}`): a droplet's or an image's.
#[derive(Debug, Clone, Deserialize)]
pub struct Action {
    pub id: u64,
    /// `in-progress`, `completed`, `errored`.
    pub status: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub region_slug: Option<String>,
}

/// An image: a public one, or one of the account's snapshots.
#[derive(Debug, Clone, Deserialize)]
pub struct DoImage {
    pub id: u64,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub slug: Option<String>,
    #[serde(default)]
    pub public: Option<bool>,
    #[serde(default)]
    pub regions: Vec<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub size_gigabytes: Option<f64>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub status: Option<String>,
}

impl DoImage {
    /// Only `available` images count (not `pending`, `deleted`, `retired`).
    /// Snapshots made before DO reported a status have none: available.
    pub fn is_available(&self) -> bool {
        self.status.as_deref().is_none_or(|s| s == "available")
    }

    pub fn created(&self) -> Option<time::OffsetDateTime> {
        parse_time(self.created_at.as_deref()?)
    }
}

pub fn parse_time(s: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

/// A snapshot as `GET /v2/droplets/{id}/snapshots` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct DropletSnapshot {
    pub id: u64,
    #[serde(default)]
    pub name: String,
}

/// An account SSH key.
#[derive(Debug, Clone, Deserialize)]
pub struct SshKey {
    pub id: u64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub fingerprint: String,
}

/// What `POST /v2/droplets` takes.
#[derive(Debug, Clone)]
pub struct NewDroplet<'a> {
    pub name: &'a str,
    pub region: &'a str,
    pub size: &'a str,
    /// A slug or an image id.
    pub image: Value,
    pub ssh_keys: &'a [u64],
    pub user_data: &'a str,
    pub tags: &'a [String],
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| {
        Error::new(
            ErrorKind::Other,
            format!("{what}: unexpected answer from DigitalOcean: {e}"),
        )
    })
}

fn field(v: &Value, key: &str) -> Value {
    v.get(key).cloned().unwrap_or(Value::Null)
}

fn q(pairs: &[(&str, &str)]) -> Params {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The calls, bound to a client and a `Cx`.
pub struct Api<'a> {
    client: &'a Client,
    cx: &'a Cx,
}

impl<'a> Api<'a> {
    pub fn new(client: &'a Client, cx: &'a Cx) -> Self {
        Api { client, cx }
    }

    // --- droplets ---

    /// `POST /v2/droplets` (202): the droplet and its create action's id.
    pub async fn create_droplet(&self, d: &NewDroplet<'_>) -> Result<(Droplet, Option<u64>)> {
        let body = json!({
            "name": d.name,
            "region": d.region,
            "size": d.size,
            "image": d.image,
            "ssh_keys": d.ssh_keys,
            "user_data": d.user_data,
            "tags": d.tags,
            "ipv6": false,
            "monitoring": false,
        });
        let v = self.client.post("/v2/droplets", body, self.cx).await?;
        let action = v
            .pointer("/links/actions")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().find(|l| l["rel"] == "create"))
            .and_then(|l| l["id"].as_u64());
        Ok((decode("POST /v2/droplets", field(&v, "droplet"))?, action))
    }

    pub async fn droplet(&self, id: u64) -> Result<Droplet> {
        let path = format!("/v2/droplets/{id}");
        let v = self.client.get(&path, Vec::new(), self.cx).await?;
        decode(&path, field(&v, "droplet"))
    }

    /// Droplets carrying `tag`.
    pub async fn droplets_tagged(&self, tag: &str) -> Result<Vec<Droplet>> {
        let v = self
            .client
            .get_all("/v2/droplets", q(&[("tag_name", tag)]), "droplets", self.cx)
            .await?;
        decode("GET /v2/droplets", Value::Array(v))
    }

    /// `DELETE /v2/droplets/{id}`; gone already is done.
    pub async fn delete_droplet(&self, id: u64) -> Result<()> {
        match self
            .client
            .delete(&format!("/v2/droplets/{id}"), None, self.cx)
            .await
        {
            Err(e) if e.is_not_found() => Ok(()),
            r => r,
        }
    }

    /// `POST /v2/droplets/{id}/actions` with `{"type": kind, ...extra}`.
    pub async fn droplet_action(&self, id: u64, body: Value) -> Result<Action> {
        let path = format!("/v2/droplets/{id}/actions");
        let v = self.client.post(&path, body, self.cx).await?;
        decode(&path, field(&v, "action"))
    }

    /// A droplet's actions, newest first as DO lists them.
    pub async fn droplet_actions(&self, id: u64) -> Result<Vec<Action>> {
        let path = format!("/v2/droplets/{id}/actions");
        let v = self
            .client
            .get_all(&path, Vec::new(), "actions", self.cx)
            .await?;
        decode(&path, Value::Array(v))
    }

    pub async fn droplet_snapshots(&self, id: u64) -> Result<Vec<DropletSnapshot>> {
        let path = format!("/v2/droplets/{id}/snapshots");
        let v = self
            .client
            .get_all(&path, Vec::new(), "snapshots", self.cx)
            .await?;
        decode(&path, Value::Array(v))
    }

    // --- actions ---

    pub async fn action(&self, id: u64) -> Result<Action> {
        let path = format!("/v2/actions/{id}");
        let v = self.client.get(&path, Vec::new(), self.cx).await?;
        decode(&path, field(&v, "action"))
    }

    pub async fn image_action(&self, image: u64, action: u64) -> Result<Action> {
        let path = format!("/v2/images/{image}/actions/{action}");
        let v = self.client.get(&path, Vec::new(), self.cx).await?;
        decode(&path, field(&v, "action"))
    }

    /// `POST /v2/images/{id}/actions {"type": "transfer", "region"}`.
    pub async fn transfer_image(&self, image: u64, region: &str) -> Result<Action> {
        let path = format!("/v2/images/{image}/actions");
        let v = self
            .client
            .post(
                &path,
                json!({"type": "transfer", "region": region}),
                self.cx,
            )
            .await?;
        decode(&path, field(&v, "action"))
    }

    pub async fn image_actions(&self, image: u64) -> Result<Vec<Action>> {
        let path = format!("/v2/images/{image}/actions");
        let v = self
            .client
            .get_all(&path, Vec::new(), "actions", self.cx)
            .await?;
        decode(&path, Value::Array(v))
    }

    // --- images ---

    pub async fn image(&self, id: u64) -> Result<DoImage> {
        let path = format!("/v2/images/{id}");
        let v = self.client.get(&path, Vec::new(), self.cx).await?;
        decode(&path, field(&v, "image"))
    }

    /// A public image by its slug.
    pub async fn image_by_slug(&self, slug: &str) -> Result<DoImage> {
        let path = format!("/v2/images/{slug}");
        let v = self.client.get(&path, Vec::new(), self.cx).await?;
        decode(&path, field(&v, "image"))
    }

    /// The account's images carrying `tag` (every page).
    pub async fn private_images_tagged(&self, tag: &str) -> Result<Vec<DoImage>> {
        let v = self
            .client
            .get_all(
                "/v2/images",
                q(&[("private", "true"), ("tag_name", tag)]),
                "images",
                self.cx,
            )
            .await?;
        decode("GET /v2/images", Value::Array(v))
    }

    /// Every image carrying `tag`, public ones included.
    pub async fn images_tagged(&self, tag: &str) -> Result<Vec<DoImage>> {
        let v = self
            .client
            .get_all("/v2/images", q(&[("tag_name", tag)]), "images", self.cx)
            .await?;
        decode("GET /v2/images", Value::Array(v))
    }

    pub async fn rename_image(&self, id: u64, name: &str) -> Result<()> {
        self.client
            .put(&format!("/v2/images/{id}"), json!({"name": name}), self.cx)
            .await
            .map(|_| ())
    }

    /// `DELETE /v2/images/{id}`; gone already is done.
    pub async fn delete_image(&self, id: u64) -> Result<()> {
        match self
            .client
            .delete(&format!("/v2/images/{id}"), None, self.cx)
            .await
        {
            Err(e) if e.is_not_found() => Ok(()),
            r => r,
        }
    }

    // --- tags ---

    /// `POST /v2/tags`: creating a tag that exists is harmless.
    pub async fn create_tag(&self, name: &str) -> Result<()> {
        match self
            .client
            .post_idempotent("/v2/tags", json!({"name": name}), self.cx)
            .await
        {
            Err(e) if e.is_already_exists() => Ok(()),
            r => r.map(|_| ()),
        }
    }

    pub async fn tag_image(&self, tag: &str, image: u64) -> Result<()> {
        self.client
            .post_idempotent(&tag_resources(tag), image_resource(image), self.cx)
            .await
            .map(|_| ())
    }

    pub async fn untag_image(&self, tag: &str, image: u64) -> Result<()> {
        match self
            .client
            .delete(&tag_resources(tag), Some(image_resource(image)), self.cx)
            .await
        {
            // An unknown tag tags nothing.
            Err(e) if e.is_not_found() => Ok(()),
            r => r,
        }
    }

    // --- account keys ---

    pub async fn create_key(&self, name: &str, public_key: &str) -> Result<SshKey> {
        let v = self
            .client
            .post(
                "/v2/account/keys",
                json!({"name": name, "public_key": public_key.trim()}),
                self.cx,
            )
            .await?;
        decode("POST /v2/account/keys", field(&v, "ssh_key"))
    }

    pub async fn keys(&self) -> Result<Vec<SshKey>> {
        let v = self
            .client
            .get_all("/v2/account/keys", Vec::new(), "ssh_keys", self.cx)
            .await?;
        decode("GET /v2/account/keys", Value::Array(v))
    }

    pub async fn delete_key(&self, id: u64) -> Result<()> {
        match self
            .client
            .delete(&format!("/v2/account/keys/{id}"), None, self.cx)
            .await
        {
            Err(e) if e.is_not_found() => Ok(()),
            r => r,
        }
    }
}

fn tag_resources(tag: &str) -> String {
    format!("/v2/tags/{tag}/resources")
}

fn image_resource(id: u64) -> Value {
    json!({"resources": [{"resource_id": id.to_string(), "resource_type": "image"}]})
}
