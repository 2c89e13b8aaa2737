//! DO's pagination (description.yml "Links & Pagination", shared/pages.yml,
//! shared/meta.yml): `per_page` 20 by default, at most 200 (the description's
//! `maximum`; a larger one is refused by the spec check before it gets
//! here), `page` from 1; `links.pages` holds only the links that make sense
//! (no `first`/`prev` on the first page, no `next`/`last` on the last) as
//! absolute URLs, and is absent on a single page (`"links": {}`);
//! `meta.total` counts every match.

use serde_json::{json, Map, Value};

use crate::core::spec::Params;

pub const DEFAULT_PER_PAGE: usize = 20;
pub const MAX_PER_PAGE: usize = 200;

fn number(params: &Params, key: &str) -> Option<usize> {
    params.get(key)?.first()?.parse().ok()
}

/// One page of `items` under `key`, with `links` and `meta`. `base` is the
/// absolute URL of the collection (`http://127.0.0.1:PORT/v2/images`); the
/// links keep the request's other query parameters (filters).
pub fn page(items: Vec<Value>, key: &str, params: &Params, base: &str) -> Value {
    let per_page = number(params, "per_page")
        .unwrap_or(DEFAULT_PER_PAGE)
        .clamp(1, MAX_PER_PAGE);
    let page = number(params, "page").unwrap_or(1).max(1);
    let total = items.len();
    let last = total.div_ceil(per_page).max(1);
    let slice: Vec<Value> = items
        .into_iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .collect();
    let url = |n: usize| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, values) in params {
            if k == "page" || k == "per_page" {
                continue;
            }
            for v in values {
                q.append_pair(k, v);
            }
        }
        q.append_pair("page", &n.to_string());
        q.append_pair("per_page", &per_page.to_string());
        format!("{base}?{}", q.finish())
    };
    let mut pages = Map::new();
    if page > 1 {
        pages.insert("first".into(), json!(url(1)));
        pages.insert("prev".into(), json!(url((page - 1).min(last))));
    }
    if page < last {
        pages.insert("next".into(), json!(url(page + 1)));
        pages.insert("last".into(), json!(url(last)));
    }
    let links = if pages.is_empty() {
        json!({})
    } else {
        json!({"pages": pages})
    };
    json!({key: slice, "links": links, "meta": {"total": total}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &[(&str, &str)]) -> Params {
        let mut p = Params::new();
        for (k, v) in q {
            p.entry((*k).to_owned()).or_default().push((*v).to_owned());
        }
        p
    }

    #[test]
    fn links_are_absolute_keep_filters_and_only_make_sense() {
        let items: Vec<Value> = (0..45).map(|i| json!(i)).collect();
        let base = "http://127.0.0.1:9/v2/images";
        let one = page(
            items.clone(),
            "images",
            &params(&[("tag_name", "a:b")]),
            base,
        );
        assert_eq!(one["images"].as_array().unwrap().len(), 20);
        assert_eq!(one["meta"]["total"], 45);
        let p = &one["links"]["pages"];
        assert_eq!(
            p["next"],
            "http://127.0.0.1:9/v2/images?tag_name=a%3Ab&page=2&per_page=20"
        );
        assert_eq!(
            p["last"],
            "http://127.0.0.1:9/v2/images?tag_name=a%3Ab&page=3&per_page=20"
        );
        assert!(p.get("first").is_none() && p.get("prev").is_none());
        let third = page(items.clone(), "images", &params(&[("page", "3")]), base);
        assert_eq!(third["images"].as_array().unwrap().len(), 5);
        let p = &third["links"]["pages"];
        assert!(p.get("next").is_none() && p.get("last").is_none());
        assert_eq!(p["prev"], "http://127.0.0.1:9/v2/images?page=2&per_page=20");
        let all = page(items, "images", &params(&[("per_page", "200")]), base);
        assert_eq!(all["links"], json!({}));
        assert_eq!(all["images"].as_array().unwrap().len(), 45);
    }
}
