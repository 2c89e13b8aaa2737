//! The account's tags as objects of their own, for the sweep's cleanup of
//! golden's per-run tags (`api.rs` has the calls on images):
//! `GET /v2/tags`, `GET /v2/tags/{tag}` and `DELETE /v2/tags/{tag}`
//! (resources/tags/: tags_list.yml, tags_get.yml, tags_delete.yml; a tag's
//! `resources.count` counts everything tagged with it).

use serde_json::Value;

use super::client::Client;
use crate::lifecycle::context::Cx;
use crate::platforms::Result;

/// A tag and how many resources carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagUse {
    pub name: String,
    pub count: u64,
}

fn tag_use(v: &Value) -> Option<TagUse> {
    Some(TagUse {
        name: v.get("name")?.as_str()?.to_owned(),
        count: v.pointer("/resources/count").and_then(Value::as_u64)?,
    })
}

/// Every tag of the account (every page).
pub async fn list(client: &Client, cx: &Cx) -> Result<Vec<TagUse>> {
    let v = client.get_all("/v2/tags", Vec::new(), "tags", cx).await?;
    Ok(v.iter().filter_map(tag_use).collect())
}

/// `GET /v2/tags/{tag}`: `None` when there is no such tag.
pub async fn get(client: &Client, tag: &str, cx: &Cx) -> Result<Option<TagUse>> {
    match client.get(&format!("/v2/tags/{tag}"), Vec::new(), cx).await {
        Ok(v) => Ok(v.get("tag").and_then(tag_use)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// `DELETE /v2/tags/{tag}` (it also untags whatever still carries it, so
/// callers check the count first); gone already is done.
pub async fn delete(client: &Client, tag: &str, cx: &Cx) -> Result<()> {
    match client.delete(&format!("/v2/tags/{tag}"), None, cx).await {
        Err(e) if e.is_not_found() => Ok(()),
        r => r,
    }
}

/// Deletes `tag` when `GET /v2/tags/{tag}` shows nothing carries it: `true`
/// when it is gone. A tag in use (a rival's claim, a candidate's deadline)
/// stays.
pub async fn delete_if_unused(client: &Client, tag: &str, cx: &Cx) -> Result<bool> {
    match get(client, tag, cx).await? {
        None => Ok(true),
        Some(t) if t.count == 0 => {
            delete(client, tag, cx).await?;
            tracing::debug!(tag, "unused tag deleted");
            Ok(true)
        }
        Some(_) => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_tag_reads_with_its_resource_count() {
        let v = json!({"name": "golden-run:1", "resources": {"count": 0, "last_tagged_uri": ""}});
        assert_eq!(
            tag_use(&v),
            Some(TagUse {
                name: "golden-run:1".into(),
                count: 0
            })
        );
        // No count: not read as unused.
        assert_eq!(tag_use(&json!({"name": "x"})), None);
    }
}
