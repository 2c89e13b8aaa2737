//! golden's DigitalOcean client against the simulator, call by call: page
//! links that name DO's own origin (a proxied endpoint), an hourly 429
//! without `retry-after`, the account-keys listing's own limit, DO's
//! tag-service error words; and, through terraform, a create answered 503
//! after it was done ("created after all"). Each test asserts from the
//! simulator's request log what the client sent.

use std::time::{Duration, Instant};

use golden::lifecycle::context::Cx;
use golden::platforms::digitalocean::client::{Client, ClientBuilder};
use golden::platforms::kit::http::Secret;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::do_sim::{DoCall, DoSim};
use super::util::{resource, today, TfDir};

fn client(sim: &DoSim) -> Client {
    ClientBuilder::new(sim.endpoint.clone(), Secret::new(sim.token.clone()))
        .build()
        .unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn cx(timeout: Duration) -> Cx {
    Cx::transient(CancellationToken::new(), timeout)
}

fn statuses(calls: &[DoCall]) -> Vec<u16> {
    calls.iter().map(|c| c.status).collect()
}

fn query_has(c: &DoCall, pair: &str) -> bool {
    c.query.split('&').any(|kv| kv == pair)
}

/// DO's page links are absolute and name `https://api.digitalocean.com`,
/// whatever endpoint (a proxy) the client was given: the client takes the
/// page number only and asks its own endpoint again, filters kept.
#[test]
fn digitalocean_client_pages_through_a_proxy_whose_links_name_do() {
    let sim = DoSim::start_with(&[
        "--action-ms",
        "100",
        "--public-url",
        "https://api.digitalocean.com",
    ]);
    let tag = "golden-family:big";
    let planted: Vec<_> = (0..450)
        .map(|i| json!({"name": format!("big-{i}"), "tags": [tag]}))
        .collect();
    sim.admin_post("/images", json!(planted));
    // A few not in the family: the filter must survive the pages.
    sim.admin_post("/images", json!([{"name": "other"}, {"name": "other-2"}]));
    let c = client(&sim);
    let got = rt()
        .block_on(c.get_all(
            "/v2/images",
            vec![
                ("private".into(), "true".into()),
                ("tag_name".into(), tag.into()),
            ],
            "images",
            &cx(Duration::from_secs(60)),
        ))
        .unwrap();
    assert_eq!(got.len(), 450);
    let mut names: Vec<&str> = got.iter().map(|i| i["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 450, "no page twice");
    let lists = sim.calls_to("GET", "/v2/images");
    assert_eq!(statuses(&lists), [200, 200, 200], "{lists:?}");
    // The simulator's links named DO's origin; the client came back here.
    let first_next = lists[0].response_body["links"]["pages"]["next"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        first_next.starts_with("https://api.digitalocean.com/v2/images?"),
        "{first_next}"
    );
    for (c, page) in lists.iter().zip(["1", "2", "3"]) {
        assert!(query_has(c, "private=true"), "{c:?}");
        assert!(query_has(c, "tag_name=golden-family%3Abig"), "{c:?}");
        assert!(query_has(c, "per_page=200"), "{c:?}");
        if page != "1" {
            assert!(query_has(c, &format!("page={page}")), "{c:?}");
        }
    }
    sim.assert_schema_clean();
}

/// The hourly budget spent: DO answers 429 without `retry-after` (only the
/// burst 429 has one), and `ratelimit-reset` says when the oldest call
/// expires. The client waits until then, once, instead of backing off and
/// failing; when the reset is past its deadline it fails at once, saying so.
#[test]
fn digitalocean_client_waits_out_an_hourly_429_until_ratelimit_reset() {
    let sim = DoSim::start();
    let c = client(&sim);
    let rt = rt();
    sim.admin_put("/ratelimit", json!({"remaining_hour": 0, "reset_in": 4}));
    let started = Instant::now();
    let v = rt
        .block_on(c.get("/v2/account", Vec::new(), &cx(Duration::from_secs(60))))
        .unwrap();
    let took = started.elapsed();
    assert_eq!(v["account"]["status"], "active");
    let calls = sim.calls_to("GET", "/v2/account");
    // One 429, then the call after the reset: no short backoffs in between.
    assert_eq!(statuses(&calls), [429, 200], "{calls:?}");
    assert_eq!(calls[0].response_body["id"], "too_many_requests");
    assert!(
        took >= Duration::from_secs(3),
        "the reset was not waited: {took:?}"
    );

    // Spent again, the reset two minutes away, the caller's deadline in 10 s.
    sim.admin_delete("/requests");
    sim.admin_put("/ratelimit", json!({"remaining_hour": 0, "reset_in": 120}));
    let started = Instant::now();
    let err = rt
        .block_on(c.get("/v2/account", Vec::new(), &cx(Duration::from_secs(10))))
        .unwrap_err();
    let msg = err.to_string();
    assert!(started.elapsed() < Duration::from_secs(3), "{msg}");
    assert!(err.is_timeout(), "{msg}");
    assert!(
        msg.contains("hourly budget of 5000 calls is spent"),
        "{msg}"
    );
    assert!(msg.contains("past this operation's deadline"), "{msg}");
    assert_eq!(statuses(&sim.calls_to("GET", "/v2/account")), [429]);
    sim.assert_schema_clean();
}

/// `GET /v2/account/keys`: 10 a minute on its own (description.yml "Rate
/// Limit"). The client paces that call in its own bucket: twelve listings
/// in a row meet no 429 (the eleventh waits out the minute).
#[test]
fn digitalocean_client_paces_account_key_listings_in_their_own_bucket() {
    let sim = DoSim::start();
    let c = client(&sim);
    let rt = rt();
    let cx = cx(Duration::from_secs(180));
    let started = Instant::now();
    for _ in 0..12 {
        rt.block_on(c.get_all("/v2/account/keys", Vec::new(), "ssh_keys", &cx))
            .unwrap();
        // Other calls are not held up by the keys bucket.
        rt.block_on(c.get("/v2/account", Vec::new(), &cx)).unwrap();
    }
    let keys = sim.calls_to("GET", "/v2/account/keys");
    assert_eq!(keys.len(), 12, "{keys:?}");
    assert!(keys.iter().all(|c| c.status == 200), "a 429: {keys:?}");
    assert!(started.elapsed() >= Duration::from_secs(55));
    assert!(sim
        .calls_to("GET", "/v2/account")
        .iter()
        .all(|c| c.status == 200));
    sim.assert_schema_clean();
}

/// DO's 400 for a bad tag name is the tag service's `{error, messages,
/// root_causes}` (tags_bad_request.yml): the user sees DO's words.
#[test]
fn digitalocean_client_shows_the_tag_services_error_words() {
    let sim = DoSim::start();
    let c = client(&sim);
    let err = rt()
        .block_on(c.post(
            "/v2/tags",
            json!({"name": "no spaces allowed"}),
            &cx(Duration::from_secs(30)),
        ))
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("HTTP 400"), "{msg}");
    assert!(msg.contains("Error validating resource tag"), "{msg}");
    let posts = sim.calls_to("POST", "/v2/tags");
    assert_eq!(statuses(&posts), [400]);
    assert!(posts[0].response_body["error"].is_string());
    assert!(posts[0].response_body.get("id").is_none());
}

fn provider(sim: &DoSim) -> String {
    format!(
        "provider \"golden\" {{\n  digitalocean {{\n    ssh_port = {}\n  }}\n}}\n",
        sim.ssh_port
    )
}

fn env(sim: &DoSim) -> Vec<(String, String)> {
    vec![
        ("DIGITALOCEAN_API_URL".into(), sim.endpoint.clone()),
        ("DIGITALOCEAN_TOKEN".into(), sim.token.clone()),
    ]
}

const IMAGE: &str = r#"
resource "golden_image" "x" {
  platform = "digitalocean"
  family   = "ghost"
  source { slug = "debian-12-x64" }
  provision { commands = ["true"] }
  smoke_test {
    checks  = ["boot", "ssh"]
    timeout = "1m"
  }
}
"#;

/// The dangerous branch: DO did the create, then a gateway answered 503.
/// golden must look the droplet up by its run tag, find it, and not create
/// a second: one build droplet in all (plus the smoke test's), each deleted,
/// nothing left. (The kit used to send a POST again after any 503, blindly.)
#[test]
fn digitalocean_a_503_after_the_create_was_done_makes_no_second_droplet() {
    let sim = DoSim::start();
    sim.fault(
        json!({"kind": "http", "method": "POST", "path": "^/v2/droplets$",
        "status": 503, "after": true, "times": 1}),
    );
    let tf = TfDir::with_env(&env(&sim));
    tf.write_with_provider(&provider(&sim), IMAGE);
    let out = tf.run(&["apply", "-auto-approve", "-no-color", "-input=false"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let reqs = sim.requests();
    let creates: Vec<&DoCall> = reqs
        .iter()
        .filter(|c| c.method == "POST" && c.path == "/v2/droplets")
        .collect();
    let create_log: Vec<(u16, String)> = creates
        .iter()
        .map(|c| {
            (
                c.status,
                c.request_body["name"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert!(out.status.success(), "{text}\ncreates: {create_log:?}");
    // The build's create answered 503 (done all the same), then only the
    // smoke test's droplet: no second build droplet.
    assert_eq!(
        creates.iter().map(|c| c.status).collect::<Vec<_>>(),
        [503, 202],
        "{create_log:?}"
    );
    let build_name = creates[0].request_body["name"].as_str().unwrap().to_owned();
    assert!(
        creates[1].request_body["name"].as_str().unwrap() != build_name,
        "the build droplet was created twice: {create_log:?}"
    );
    let run_tag = creates[0].request_body["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|t| t.starts_with("golden-run:"))
        .unwrap()
        .to_owned();
    // Between the 503 and anything else, the run tag was looked up and
    // the droplet found.
    let at = reqs
        .iter()
        .position(|c| c.method == "POST" && c.path == "/v2/droplets")
        .unwrap();
    let lookup = reqs[at + 1..]
        .iter()
        .find(|c| c.method == "GET" && c.path == "/v2/droplets")
        .expect("no lookup after the 503");
    let encoded = run_tag.replace(':', "%3A");
    assert!(
        lookup.query.contains(&format!("tag_name={encoded}")),
        "{lookup:?}"
    );
    let found = lookup.response_body["droplets"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{lookup:?}");
    assert_eq!(found[0]["name"], build_name.as_str());
    let build_id = found[0]["id"].as_u64().unwrap();
    // The build went on with that droplet: its snapshot was taken from it.
    assert!(reqs.iter().any(|c| c.method == "POST"
        && c.path == format!("/v2/droplets/{build_id}/actions")
        && c.request_body["type"] == "snapshot"));
    let x = resource(&tf.state_json(), "golden_image.x").clone();
    assert_eq!(x["name"], format!("ghost-{}-001", today()));
    sim.assert_nothing_left();
    sim.assert_schema_clean();
}
