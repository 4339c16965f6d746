//! The simulator exercised over real HTTP with a plain client.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::{
    AuthorizeOutcome, DeltaOrder, DeviceOutcome, DeviceScript, Failure, FileOpts, GenSpec,
    QuickXorHash, RequestKind, SimConfig, Simulator, Tree,
};

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }
    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

impl Client {
    fn new(sim: &Simulator) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: sim.graph_url(),
            token: sim.token().to_owned(),
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{}", self.base, path)
        }
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> Reply {
        let r = rb.send().await.expect("request");
        let status = r.status();
        let headers = r.headers().clone();
        let body = r.bytes().await.expect("body").to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(self.http.get(self.url(path)).bearer_auth(&self.token))
            .await
    }

    async fn ok(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()
    }

    /// Follows nextLinks verbatim; returns every item and the number of pages.
    async fn all_pages(&self, first: &str) -> (Vec<Value>, usize, Value) {
        let mut url = first.to_owned();
        let mut items = Vec::new();
        let mut pages = 0;
        loop {
            let page = self.ok(&url).await;
            pages += 1;
            items.extend(page["value"].as_array().unwrap().iter().cloned());
            match page["@odata.nextLink"].as_str() {
                Some(next) => {
                    assert!(
                        next.starts_with("http://127.0.0.1:"),
                        "absolute nextLink: {next}"
                    );
                    url = next.to_owned();
                }
                None => return (items, pages, page),
            }
        }
    }

    async fn download(&self, url: &str, range: Option<&str>) -> Reply {
        let mut rb = self.http.get(url);
        if let Some(r) = range {
            rb = rb.header("Range", r);
        }
        self.send(rb).await
    }

    async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> Reply {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        self.send(
            self.http
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body),
        )
        .await
    }
}

fn ids(items: &[Value]) -> HashSet<String> {
    items
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn paging_2500_children_follows_next_links_to_every_item() {
    let mut tree = Tree::personal().folder("Big");
    for i in 0..2500 {
        tree = tree.file(&format!("Big/f{i:04}.txt"), 10);
    }
    let sim = Simulator::start(tree);
    let c = Client::new(&sim);

    let (items, pages, _) = c.all_pages("/me/drive/root:/Big:/children").await;
    assert_eq!((items.len(), pages), (2500, 13), "default page is 200");
    assert_eq!(ids(&items).len(), 2500);

    let (items, pages, _) = c.all_pages("/me/drive/root:/Big:/children?$top=1000").await;
    assert_eq!((items.len(), pages), (2500, 3));

    let (items, pages, _) = c.all_pages("/me/drive/root:/Big:/children?$top=5000").await;
    assert_eq!((items.len(), pages), (2500, 3), "$top is capped at 1000");

    sim.set_ragged_pages(true);
    let (items, pages, _) = c.all_pages("/me/drive/root:/Big:/children?$top=1000").await;
    assert_eq!(ids(&items).len(), 2500);
    assert!(pages > 3, "ragged pages are shorter than asked: {pages}");

    // The nextLink is by ID and carries an opaque skiptoken.
    let first = c.ok("/me/drive/root:/Big:/children").await;
    let next = first["@odata.nextLink"].as_str().unwrap();
    assert!(
        next.contains("/items/") && next.contains("$skiptoken="),
        "{next}"
    );
    let bad = c.get(&format!("{}x", next)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        sim.requests(RequestKind::Children),
        13 + 3 + 3 + pages as u64 + 2
    );
}

#[tokio::test]
async fn select_returns_only_the_listed_fields_and_download_urls_when_asked() {
    let sim = Simulator::start(Tree::personal().file("A/a.jpg", 100).folder("A/B"));
    let c = Client::new(&sim);
    let page = c.ok("/me/drive/root:/A:/children?$select=name,size").await;
    for v in page["value"].as_array().unwrap() {
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["id", "name", "size"]);
    }
    let page = c.ok("/me/drive/root:/A:/children").await;
    let file = page["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "a.jpg")
        .unwrap()
        .clone();
    assert!(
        file.get("@microsoft.graph.downloadUrl").is_some(),
        "the default shape of a listing carries downloadUrl"
    );
    assert_eq!(
        file["file"]["hashes"]["quickXorHash"],
        sim.quick_xor("A/a.jpg")
    );
    assert!(
        file["file"]["hashes"].get("sha1Hash").is_none(),
        "personal post-2023: no sha1"
    );
    assert_eq!(file["parentReference"]["path"], "/drive/root:/A");

    let urls = |page: &Value| {
        page["value"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v.get("@microsoft.graph.downloadUrl").is_some())
            .count()
    };
    let dollar = "/me/drive/root:/A:/children?$select=id,@microsoft.graph.downloadUrl";
    let bare = "/me/drive/root:/A:/children?select=id,@microsoft.graph.downloadUrl";
    assert_eq!(urls(&c.ok(dollar).await), 0, "left out under $select");
    assert_eq!(urls(&c.ok(bare).await), 1, "kept under select=");
    sim.set_listing_urls(crate::ListingUrls::Selected);
    assert_eq!(urls(&c.ok(dollar).await), 1);
    sim.set_listing_urls(crate::ListingUrls::NotInListings);
    assert_eq!(urls(&c.ok(bare).await), 0);
    assert_eq!(urls(&c.ok("/me/drive/root:/A:/children").await), 0);
    sim.set_listing_urls(crate::ListingUrls::default());
    let single = c.ok("/me/drive/root:/A/a.jpg").await;
    assert!(
        single["@microsoft.graph.downloadUrl"]
            .as_str()
            .unwrap()
            .starts_with(&sim.download_host_url())
    );
    let by_id = c
        .ok(&format!(
            "/drives/{}/items/{}",
            sim.drive_id(),
            sim.item_id("A/a.jpg")
        ))
        .await;
    assert_eq!(by_id["name"], "a.jpg");
}

#[tokio::test]
async fn content_redirects_to_the_download_host_which_honours_range() {
    let sim = Simulator::start(
        Tree::personal()
            .file("Photos/a.jpg", 300_000)
            .file("empty.txt", 0),
    );
    let c = Client::new(&sim);
    let want = sim.content("Photos/a.jpg");
    assert_eq!(want.len(), 300_000);

    let r = c
        .get(&format!(
            "/me/drive/items/{}/content",
            sim.item_id("Photos/a.jpg")
        ))
        .await;
    assert_eq!(r.status, StatusCode::FOUND);
    let loc = r.header("location").unwrap();
    assert!(
        loc.starts_with(&sim.download_host_url()) && loc.contains("tempauth="),
        "{loc}"
    );
    assert_ne!(
        sim.download_host_url(),
        sim.graph_url().trim_end_matches("/v1.0")
    );

    let full = c.download(&loc, None).await;
    assert_eq!(full.status, StatusCode::OK);
    assert_eq!(full.header("accept-ranges").as_deref(), Some("bytes"));
    assert_eq!(full.body, want);
    assert_eq!(QuickXorHash::of(&full.body), sim.quick_xor("Photos/a.jpg"));

    let part = c.download(&loc, Some("bytes=1000-1999")).await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        part.header("content-range").as_deref(),
        Some("bytes 1000-1999/300000")
    );
    assert_eq!(part.body, want[1000..2000]);
    let tail = c.download(&loc, Some("bytes=299990-")).await;
    assert_eq!(tail.body, want[299_990..]);

    let bad = c.download(&loc, Some("bytes=300000-")).await;
    assert_eq!(bad.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        bad.header("content-range").as_deref(),
        Some("bytes */300000")
    );

    sim.set_ignore_range(true);
    let ignored = c.download(&loc, Some("bytes=1000-1999")).await;
    assert_eq!(ignored.status, StatusCode::OK);
    assert_eq!(ignored.body.len(), 300_000);

    // Path addressing works for /content too; a zero-byte file lists no hashes.
    let r = c.get("/me/drive/root:/empty.txt:/content").await;
    assert_eq!(r.status, StatusCode::FOUND);
    let empty = c.download(&r.header("location").unwrap(), None).await;
    assert_eq!((empty.status, empty.body.len()), (StatusCode::OK, 0));
    let meta = c.ok("/me/drive/root:/empty.txt").await;
    assert_eq!(meta["file"]["hashes"], serde_json::json!({}));

    assert_eq!(sim.requests(RequestKind::Content), 2);
    assert_eq!(sim.requests(RequestKind::DownloadWithRange), 4);
    assert_eq!(
        sim.downloads_of("Photos/a.jpg"),
        5,
        "full, two ranges, the 416 and the ignored range"
    );
    assert_eq!(
        sim.ranges_of("Photos/a.jpg")[1].as_deref(),
        Some("bytes=1000-1999")
    );
    assert_eq!(sim.authorization_headers_on_download_host(), 0);
    let with_bearer = c.send(c.http.get(&loc).bearer_auth("x")).await;
    assert_eq!(with_bearer.status, StatusCode::OK);
    assert_eq!(sim.authorization_headers_on_download_host(), 1);
}

#[tokio::test]
async fn an_expired_download_url_is_refused() {
    let sim = Simulator::start(Tree::personal().file("a.bin", 1000));
    let c = Client::new(&sim);
    sim.set_download_url_lifetime(Duration::ZERO);
    let r = c.get("/me/drive/root:/a.bin:/content").await;
    let expired = c.download(&r.header("location").unwrap(), None).await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
    sim.set_download_url_lifetime(Duration::from_secs(60));
    let r = c.get("/me/drive/root:/a.bin:/content").await;
    assert_eq!(
        c.download(&r.header("location").unwrap(), None)
            .await
            .status,
        StatusCode::OK
    );
    let forged = c
        .download(
            &format!("{}/x/download.aspx?tempauth=abc", sim.download_host_url()),
            None,
        )
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn throttling_sends_retry_after_and_records_requests_that_ignore_it() {
    let sim = Simulator::start(Tree::personal().file("a.bin", 10));
    let c = Client::new(&sim);
    sim.throttle_next(1, 1);
    let r = c.get("/me/drive/root/children").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
    assert_eq!(r.code(), "activityLimitReached");
    assert!(r.json()["error"]["innerError"]["request-id"].is_string());

    // Calling again at once is a violation, and is throttled again.
    let again = c.get("/me/drive").await;
    assert_eq!(again.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(sim.violations().len(), 1);
    assert_eq!(sim.violations()[0].kind, RequestKind::Drive);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(c.get("/me/drive").await.status, StatusCode::OK);
    assert_eq!(sim.violations().len(), 1);

    // 503 without Retry-After sets no penalty.
    sim.fail_next(1, Failure::unavailable(None).only(RequestKind::Item));
    assert_eq!(c.get("/me/drive").await.status, StatusCode::OK);
    let r = c.get("/me/drive/root").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.header("retry-after").is_none());
    assert_eq!(c.get("/me/drive/root").await.status, StatusCode::OK);
    assert_eq!(sim.violations().len(), 1);
    assert_eq!(sim.requests_during_retry_after(), 1);

    // A fraction: every 4th children call.
    sim.fail_fraction(0.25, Failure::server_error().only(RequestKind::Children));
    let mut failed = 0;
    for _ in 0..8 {
        if c.get("/me/drive/root/children").await.status == StatusCode::INTERNAL_SERVER_ERROR {
            failed += 1;
        }
    }
    assert_eq!(failed, 2);
    assert_eq!(sim.failures_served(), 4);

    sim.clear_failures();
    // A budget of 10 units a minute: headers from 80 % spent on, then 429 with Retry-After = reset.
    sim.set_rate_limit(Some((10, Duration::from_secs(60))));
    let r = c.get("/me/drive").await;
    assert_eq!(
        r.header("ratelimit-limit"),
        None,
        "not before 80 % is spent"
    );
    for _ in 0..3 {
        c.get("/me/drive").await;
    }
    let r = c.get("/me/drive").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("ratelimit-limit").as_deref(), Some("10"));
    assert_eq!(r.header("ratelimit-remaining").as_deref(), Some("0"));
    let r = c.get("/me/drive").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.header("retry-after"), r.header("ratelimit-reset"));
    sim.set_rate_limit(None);
}

#[tokio::test]
async fn a_throttling_burst_ends_when_its_retry_after_window_has_passed() {
    let sim = Simulator::start(Tree::personal().file("a.bin", 10));
    let c = Client::new(&sim);
    // Ten of every twenty requests, but a budget refills after its Retry-After.
    sim.fail_in_bursts(20, 10, Failure::throttled(1).only(RequestKind::Drive));
    for _ in 0..10 {
        assert_eq!(c.get("/me/drive").await.status, StatusCode::OK);
    }
    let r = c.get("/me/drive").await;
    assert_eq!(
        r.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the episode starts"
    );
    // A client that waits out the window is served: the episode is over, not 9 refusals to go, and the
    // cycle's ten good requests follow.
    tokio::time::sleep(Duration::from_millis(1050)).await;
    for _ in 0..10 {
        assert_eq!(c.get("/me/drive").await.status, StatusCode::OK);
    }
    assert_eq!(sim.failures_served(), 1);
    // The next cycle starts an episode again, and without a window a burst runs its full length.
    assert_eq!(
        c.get("/me/drive").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    sim.clear_failures();
    sim.fail_in_bursts(4, 3, Failure::server_error().only(RequestKind::Drive));
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..5 {
            v.push(c.get("/me/drive").await.status.as_u16());
        }
        v
    };
    assert_eq!(statuses, [200, 500, 500, 500, 200]);
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

#[tokio::test]
async fn random_refusals_hit_about_their_share_whatever_the_pace_and_periodic_bursts_refuse_everything_in_their_window()
 {
    let sim = Simulator::start(Tree::personal().file("a.bin", 10));
    let c = Client::new(&sim);
    sim.fail_randomly(0.1, 42, Failure::server_error().only(RequestKind::Drive));
    let mut failed = 0;
    for _ in 0..1000 {
        if c.get("/me/drive").await.status == StatusCode::INTERNAL_SERVER_ERROR {
            failed += 1;
        }
    }
    assert!((60..=140).contains(&failed), "{failed} of 1000");
    sim.clear_failures();

    // A 400 ms burst every 1.6 s, the first one 1.2 s from now: the answer's Retry-After is what is left of
    // the burst, rounded up to a second; waiting it out lands between two bursts.
    let started = std::time::Instant::now();
    sim.fail_periodically(
        Duration::from_millis(1600),
        Duration::from_millis(400),
        Failure::throttled(9).only(RequestKind::Drive),
    );
    assert_eq!(c.get("/me/drive").await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1220).saturating_sub(started.elapsed())).await;
    let r = c.get("/me/drive").await;
    let refused_at = std::time::Instant::now();
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
    tokio::time::sleep(Duration::from_millis(1100).saturating_sub(refused_at.elapsed())).await;
    assert_eq!(
        c.get("/me/drive").await.status,
        StatusCode::OK,
        "between bursts"
    );
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
    sim.clear_failures();
}

#[tokio::test]
async fn a_reset_mid_body_truncates_with_the_full_content_length() {
    let sim = Simulator::start(Tree::personal().file("big.bin", 1_000_000));
    let c = Client::new(&sim);
    sim.reset_next_downloads("big.bin", 1, Some(100_000));
    let r = c.get("/me/drive/root:/big.bin:/content").await;
    let loc = r.header("location").unwrap();
    let mut resp = c.http.get(&loc).send().await.unwrap();
    assert_eq!(resp.content_length(), Some(1_000_000));
    let mut got = Vec::new();
    let err = loop {
        match resp.chunk().await {
            Ok(Some(b)) => got.extend_from_slice(&b),
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    assert!(
        err.is_some(),
        "the body must fail, got {} bytes cleanly",
        got.len()
    );
    assert_eq!(got.len(), 100_000);
    assert_eq!(got, sim.content("big.bin")[..100_000]);
    // The next download is whole, and a resume from where it stopped completes the file.
    let rest = c.download(&loc, Some("bytes=100000-")).await;
    assert_eq!(rest.status, StatusCode::PARTIAL_CONTENT);
    got.extend_from_slice(&rest.body);
    assert_eq!(QuickXorHash::of(&got), sim.quick_xor("big.bin"));
    assert_eq!(sim.current_downloads(), 0);
}

#[tokio::test]
async fn corruption_alters_one_served_byte_but_not_the_listing() {
    let sim = Simulator::start(Tree::personal().file("a.bin", 5000));
    let c = Client::new(&sim);
    sim.corrupt("a.bin", true);
    let r = c.get("/me/drive/root:/a.bin:/content").await;
    let body = c.download(&r.header("location").unwrap(), None).await.body;
    let want = sim.content("a.bin");
    assert_eq!(body.iter().zip(&want).filter(|(a, b)| a != b).count(), 1);
    let meta = c.ok("/me/drive/root:/a.bin").await;
    assert_eq!(
        meta["file"]["hashes"]["quickXorHash"],
        QuickXorHash::of(&want)
    );
    sim.corrupt("a.bin", false);
    let body = c.download(&r.header("location").unwrap(), None).await.body;
    assert_eq!(body, want);
}

#[tokio::test]
async fn downloads_in_flight_are_counted_until_the_body_ends() {
    let sim = Simulator::start(Tree::personal().file("big.bin", 50_000_000));
    let c = Client::new(&sim);
    let loc = c
        .get("/me/drive/root:/big.bin:/content")
        .await
        .header("location")
        .unwrap();
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(c.http.get(&loc).send().await.unwrap());
    }
    assert_eq!(sim.current_downloads(), 3);
    drop(open);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while sim.current_downloads() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sim.current_downloads(), 0);
    assert_eq!(sim.max_concurrent_downloads(), 3);
    sim.reset_counters();
    assert_eq!(sim.max_concurrent_downloads(), 0);
}

#[tokio::test]
async fn bearer_tokens_are_required_and_expire() {
    let sim = Simulator::start(Tree::personal());
    let mut c = Client::new(&sim);
    let r = c.send(c.http.get(c.url("/me"))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.code(), "InvalidAuthenticationToken");
    assert!(r.header("www-authenticate").unwrap().starts_with("Bearer "));
    c.token = "nonsense".into();
    assert_eq!(c.get("/me").await.status, StatusCode::UNAUTHORIZED);
    c.token = sim.issue_access_token_for(Duration::from_secs(60));
    assert_eq!(c.get("/me").await.status, StatusCode::OK);
    sim.expire_access_tokens();
    assert_eq!(c.get("/me").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(sim.unauthorized_responses(), 3);
}

#[tokio::test]
async fn special_folders_packages_vaults_and_malware_behave_like_the_service() {
    let tree = Tree::personal()
        .file("Pictures/p.jpg", 10)
        .special("photos", "Pictures")
        .onenote_package("Notebooks/Work")
        .file("Notebooks/Work/Section.one", 50)
        .vault("Personal Vault")
        .file_with("bad.exe", 10, FileOpts::new().malware("Trojan"));
    let sim = Simulator::start(tree);
    let c = Client::new(&sim);
    let photos = c.ok("/me/drive/special/photos").await;
    assert_eq!(photos["name"], "Pictures");
    assert_eq!(photos["specialFolder"]["name"], "photos");
    assert_eq!(
        c.ok("/me/drive/special/photos/children").await["value"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        c.get("/me/drive/special/cameraroll").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        c.get("/me/drive/special/nonsense").await.status,
        StatusCode::NOT_FOUND
    );

    let nb = c.ok("/me/drive/root:/Notebooks/Work").await;
    assert_eq!(nb["package"]["type"], "oneNote");
    assert!(nb.get("folder").is_none(), "personal: package only");
    assert_eq!(
        c.get("/me/drive/root:/Notebooks/Work:/content")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        c.ok("/me/drive/root:/Notebooks/Work:/children").await["value"][0]["name"],
        "Section.one"
    );

    let v = c.get("/me/drive/root:/Personal Vault:/children").await;
    assert_eq!(
        (v.status, v.code()),
        (StatusCode::BAD_REQUEST, "invalidRequest".to_owned())
    );
    assert_eq!(v.json()["error"]["innerError"]["code"], "invalidResourceId");

    let bad = c.ok("/me/drive/root:/bad.exe").await;
    assert_eq!(bad["malware"]["description"], "Trojan");
    assert!(bad.get("@microsoft.graph.downloadUrl").is_none());
    let r = c.get("/me/drive/root:/bad.exe:/content").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "malwareDetected".to_owned())
    );
}

#[tokio::test]
async fn hostile_names_are_addressable_per_segment() {
    let cjk = "漢".repeat(100);
    let tree = Tree::personal()
        .file_named_in("Odd", "a/b", 1)
        .file_named_in("Odd", "..", 2)
        .file_named_in("Odd", "nul\0byte", 3)
        .file_named_in("Odd", &cjk, 4)
        .file_named_in("Odd", "100% #1 + 'x'", 5);
    let sim = Simulator::start(tree);
    let c = Client::new(&sim);
    let page = c.ok("/me/drive/root:/Odd:/children").await;
    let names: HashSet<String> = page["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        names.contains("a/b")
            && names.contains("..")
            && names.contains("nul\0byte")
            && names.contains(&cjk)
    );
    let enc = |s: &str| crate::server::enc_segment(s);
    let r = c.ok(&format!("/me/drive/root:/Odd/{}", enc("a/b"))).await;
    assert_eq!(r["size"], 1);
    let r = c
        .ok(&format!("/me/drive/root:/Odd/{}:", enc("100% #1 + 'x'")))
        .await;
    assert_eq!(r["size"], 5);
    assert_eq!(sim.content_by_id(&sim.item_id_in("Odd", &cjk)).len(), 4);
}

#[tokio::test]
async fn delta_enumerates_then_reports_changes_and_deletions() {
    let sim = Simulator::start(
        Tree::personal()
            .file("A/a.txt", 10)
            .file("A/B/b.txt", 20)
            .file("c.txt", 30),
    );
    let c = Client::new(&sim);
    sim.set_page_cap(Some(2));
    let (items, pages, last) = c.all_pages("/me/drive/root/delta").await;
    assert_eq!(items.len(), 6, "root, A, a, B, b, c");
    assert_eq!(pages, 3);
    assert!(
        items
            .iter()
            .all(|v| v["parentReference"].get("path").is_none()),
        "delta has no parentReference.path"
    );
    let delta_link = last["@odata.deltaLink"].as_str().unwrap().to_owned();

    let (none, _, last) = c.all_pages(&delta_link).await;
    assert!(none.is_empty());
    let delta_link = last["@odata.deltaLink"].as_str().unwrap().to_owned();

    sim.modify_file("A/a.txt");
    sim.rename("A/B", "Renamed");
    sim.delete("c.txt");
    let new_id = sim.add_file("A/new.txt", 5);
    let (changes, _, last) = c.all_pages(&delta_link).await;
    let by_id = |id: &str| {
        changes
            .iter()
            .rev()
            .find(|v| v["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} not in delta"))
    };
    assert_eq!(
        by_id(&sim.item_id("A/a.txt"))["file"]["hashes"]["quickXorHash"],
        sim.quick_xor("A/a.txt")
    );
    assert_eq!(by_id(&sim.item_id("A/Renamed"))["name"], "Renamed");
    assert!(
        changes.iter().all(|v| v["name"] != "b.txt"),
        "a folder rename emits only the folder"
    );
    assert_eq!(by_id(&new_id)["name"], "new.txt");
    let deleted: Vec<&Value> = changes
        .iter()
        .filter(|v| v.get("deleted").is_some())
        .collect();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["name"], "c.txt");
    assert!(
        deleted[0].get("size").is_none(),
        "personal deletes drop size"
    );
    let delta_link = last["@odata.deltaLink"].as_str().unwrap().to_owned();

    let latest = c.ok("/me/drive/root/delta?token=latest").await;
    assert!(latest["value"].as_array().unwrap().is_empty());
    assert!(latest["@odata.deltaLink"].is_string());

    sim.require_resync();
    let r = c.get(&delta_link).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::GONE, "resyncRequired".to_owned())
    );
    let fresh = r.header("location").unwrap();
    let (items, _, _) = c.all_pages(&fresh).await;
    assert_eq!(items.len(), 6, "root, A, a, new, Renamed, b (c deleted)");

    // Personal accepts delta on a folder.
    let (items, _, _) = c
        .all_pages(&format!("/me/drive/items/{}/delta", sim.item_id("A")))
        .await;
    assert_eq!(items.len(), 5);
    sim.set_delta_order(DeltaOrder::ChildrenFirst);
    let (items, _, _) = c.all_pages("/me/drive/root/delta").await;
    assert_eq!(items.last().unwrap()["root"], serde_json::json!({}));
}

#[tokio::test]
async fn business_delta_is_root_only_repeats_ancestors_and_hides_names_of_deletes() {
    let sim = Simulator::start(
        Tree::business()
            .file("A/B/deep.txt", 10)
            .file("A/x.txt", 1)
            .onenote_package("N"),
    );
    let c = Client::new(&sim);
    let r = c
        .get(&format!("/me/drive/items/{}/delta", sim.item_id("A")))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_IMPLEMENTED, "notSupported".to_owned())
    );
    let (_, _, last) = c.all_pages("/me/drive/root/delta").await;
    let link = last["@odata.deltaLink"].as_str().unwrap().to_owned();
    sim.delete("A/B/deep.txt");
    let (changes, _, _) = c.all_pages(&link).await;
    let names: Vec<Option<&str>> = changes.iter().map(|v| v["name"].as_str()).collect();
    assert!(
        names.contains(&Some("root")) && names.contains(&Some("A")),
        "ancestors are repeated: {names:?}"
    );
    let del = changes.iter().find(|v| v.get("deleted").is_some()).unwrap();
    assert!(del.get("name").is_none());
    assert_eq!(del["size"], 0);
    assert!(
        changes.iter().all(|v| v.get("cTag").is_none()),
        "ODB delta omits cTag"
    );
    let n = c.ok("/me/drive/root:/N").await;
    assert!(
        n.get("package").is_some() && n.get("folder").is_some(),
        "ODB packages also show folder"
    );
    let f = c.ok("/me/drive/root:/A/x.txt").await;
    assert_eq!(
        f["file"]["hashes"].as_object().unwrap().len(),
        1,
        "business: quickXorHash only"
    );
    assert!(
        f["parentReference"]["path"]
            .as_str()
            .unwrap()
            .starts_with("/drives/b!")
    );
}

#[tokio::test]
async fn remote_items_are_listed_through_their_own_drive() {
    let sim = Simulator::start(
        Tree::personal().remote_item("Shared/Holiday", Tree::personal().file("x.jpg", 7)),
    );
    let c = Client::new(&sim);
    let page = c.ok("/me/drive/root:/Shared:/children").await;
    let shortcut = &page["value"][0];
    let remote = &shortcut["remoteItem"];
    let drive = remote["parentReference"]["driveId"].as_str().unwrap();
    assert_ne!(drive, sim.drive_id());
    let kids = c
        .ok(&format!(
            "/drives/{drive}/items/{}/children",
            remote["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(kids["value"][0]["name"], "x.jpg");
    assert_eq!(sim.content("Shared/Holiday/x.jpg").len(), 7);
}

#[tokio::test]
async fn shared_files_carry_a_file_facet_and_a_revoked_share_answers_404_while_its_shortcut_stays()
{
    let sim = Simulator::start(
        Tree::personal()
            .remote_item("Shared/Holiday", Tree::personal().file("x.jpg", 7))
            .remote_file("Shared/report.pdf", 9),
    );
    let c = Client::new(&sim);
    let page = c.ok("/me/drive/root:/Shared:/children").await;
    let by_name = |name: &str| {
        page["value"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .unwrap()["remoteItem"]
            .clone()
    };
    let file = by_name("report.pdf");
    assert!(
        file["file"].is_object() && file["folder"].is_null(),
        "{file}"
    );
    assert_eq!(file["size"], 9);
    assert_eq!(sim.content("Shared/report.pdf").len(), 9);
    let folder = by_name("Holiday");
    assert!(folder["folder"].is_object(), "{folder}");
    let url = format!(
        "/drives/{}/items/{}/children",
        folder["parentReference"]["driveId"].as_str().unwrap(),
        folder["id"].as_str().unwrap()
    );
    sim.revoke_shared("Shared/Holiday", 404);
    let refused = c.get(&url).await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    assert_eq!(refused.code(), "itemNotFound");
    let again = c.ok("/me/drive/root:/Shared:/children").await;
    assert_eq!(
        again["value"].as_array().unwrap().len(),
        2,
        "the shortcut stays listed"
    );
}

fn tenant() -> Tree {
    Tree::business()
        .file("mine.txt", 3)
        .site_library(
            "contoso.sharepoint.com:/sites/Team",
            "Documents",
            Tree::business().file("Plans/q1.docx", 40),
        )
        .site_library(
            "contoso.sharepoint.com:/sites/Team",
            "Archive",
            Tree::business()
                .file("Old/2019.pdf", 70)
                .file("Old/Deep/x.txt", 5),
        )
        .user_drive(
            "adele@contoso.example",
            "Adele Vance",
            Tree::business().file("notes.txt", 9),
        )
        .private_user_drive(
            "diego@contoso.example",
            "Diego Siciliani",
            Tree::business().file("d.txt", 1),
        )
        .user_without_drive("new@contoso.example", "New Hire")
}

#[tokio::test]
async fn sites_are_found_by_path_or_id_and_list_their_libraries() {
    let sim = Simulator::start(tenant());
    let c = Client::new(&sim);
    let site = c.ok("/sites/contoso.sharepoint.com:/sites/Team").await;
    let id = site["id"].as_str().unwrap().to_owned();
    assert_eq!(id, sim.site_id("contoso.sharepoint.com:/sites/Team"));
    assert_eq!(id.split(',').count(), 3, "host,guid,guid: {id}");
    assert_eq!(c.ok(&format!("/sites/{id}")).await["id"], id.as_str());
    assert_eq!(
        c.ok("/sites/contoso.sharepoint.com:/sites/team:").await["id"],
        id.as_str(),
        "case-insensitive, a closing colon allowed"
    );
    let default = c.ok(&format!("/sites/{id}/drive")).await;
    assert_eq!(default["driveType"], "documentLibrary");
    assert_eq!(default["name"], "Documents");
    let drives = c.ok(&format!("/sites/{id}/drives")).await;
    let names: Vec<&str> = drives["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Documents", "Archive"]);
    let archive = sim.library_drive_id("contoso.sharepoint.com:/sites/Team", "Archive");
    assert_eq!(drives["value"][1]["id"], archive.as_str());
    // A library is a business drive: quickXorHash only, delta only at its root.
    let f = c.ok(&format!("/drives/{archive}/root:/Old/2019.pdf")).await;
    assert_eq!(f["file"]["hashes"].as_object().unwrap().len(), 1);
    assert_eq!(f["parentReference"]["driveType"], "documentLibrary");
    let old = c.ok(&format!("/drives/{archive}/root:/Old")).await;
    let r = c
        .get(&format!(
            "/drives/{archive}/items/{}/delta",
            old["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        (r.status.as_u16(), r.code()),
        (501, "notSupported".to_owned())
    );
    let (items, _, _) = c.all_pages(&format!("/drives/{archive}/root/delta")).await;
    assert!(items.iter().any(|i| i["name"] == "x.txt"));
    assert_eq!(sim.content_in(&archive, "Old/Deep/x.txt").len(), 5);
    assert_eq!(sim.item_count_in(&archive), 4);
    // No such site.
    let r = c.get("/sites/contoso.sharepoint.com:/sites/Nope").await;
    assert_eq!(
        (r.status.as_u16(), r.code()),
        (404, "itemNotFound".to_owned())
    );
    assert!(sim.requests(RequestKind::Site) >= 4);
}

#[tokio::test]
async fn sites_need_sites_read_all_and_me_needs_a_signed_in_user() {
    let sim = Simulator::start(tenant());
    let c = Client::new(&sim);
    let id = sim.site_id("contoso.sharepoint.com:/sites/Team");
    let library = sim.library_drive_id("contoso.sharepoint.com:/sites/Team", "Documents");
    sim.set_token_scopes(&["Files.Read.All", "User.Read"]);
    for path in [
        "/sites/contoso.sharepoint.com:/sites/Team".to_owned(),
        format!("/sites/{id}/drive"),
        format!("/sites/{id}/drives"),
    ] {
        let r = c.get(&path).await;
        assert_eq!(
            (r.status.as_u16(), r.code()),
            (403, "accessDenied".to_owned()),
            "{path}"
        );
    }
    // The library by drive ID needs only Files.Read.All.
    assert_eq!(
        c.ok(&format!("/drives/{library}")).await["name"],
        "Documents"
    );
    // Fully qualified names count too.
    sim.set_token_scopes(&["https://graph.microsoft.com/Sites.Read.All"]);
    assert_eq!(c.get(&format!("/sites/{id}")).await.status, StatusCode::OK);
    // An app-only token has no /me, and cannot provision a user's OneDrive.
    sim.set_token_app_only(true);
    for path in ["/me", "/me/drive", "/me/drives", "/me/drive/root"] {
        let r = c.get(path).await;
        assert_eq!(
            (r.status.as_u16(), r.code()),
            (400, "BadRequest".to_owned()),
            "{path}"
        );
    }
    let r = c.get("/users/new@contoso.example/drive").await;
    assert_eq!(
        (r.status.as_u16(), r.code()),
        (400, "invalidRequest".to_owned())
    );
    assert_eq!(
        c.ok("/users/diego@contoso.example/drive").await["owner"]["user"]["displayName"],
        "Diego Siciliani",
        "app-only reads any user's OneDrive"
    );
}

#[tokio::test]
async fn other_users_drives_are_reached_by_upn_or_refused_plainly() {
    let sim = Simulator::start(tenant());
    let c = Client::new(&sim);
    let adele = c.ok("/users/adele@contoso.example/drive").await;
    assert_eq!(
        adele["id"],
        sim.user_drive_id("adele@contoso.example").as_str()
    );
    assert_eq!(adele["driveType"], "business");
    let kids = c
        .ok("/users/ADELE@contoso.example/drive/root/children")
        .await;
    assert_eq!(kids["value"][0]["name"], "notes.txt");
    let mine = c
        .ok(&format!("/users/{}/drive", "megan@contoso.example"))
        .await;
    assert_eq!(mine["id"], sim.drive_id().as_str());
    for (upn, status, code) in [
        ("nobody@contoso.example", 404, "Request_ResourceNotFound"),
        ("new@contoso.example", 404, "ResourceNotFound"),
        ("diego@contoso.example", 403, "accessDenied"),
    ] {
        let r = c.get(&format!("/users/{upn}/drive")).await;
        assert_eq!(
            (r.status.as_u16(), r.code()),
            (status, code.to_owned()),
            "{upn}"
        );
    }
    let drives = c.ok("/users/adele@contoso.example/drives").await;
    assert_eq!(drives["value"].as_array().unwrap().len(), 1);
}

#[tokio::test]
// One sign-in story told in order (device code, refresh with rotation, PKCE); each step needs the last.
#[allow(clippy::too_many_lines)]
async fn device_code_refresh_rotation_and_pkce() {
    let sim = Simulator::start(Tree::personal());
    let c = Client::new(&sim);
    let base = format!("{}/common/oauth2/v2.0", sim.auth_url());
    sim.script_device_code(DeviceScript {
        pending: 2,
        slow_down: 1,
        outcome: DeviceOutcome::Approve,
    });
    let dc = c
        .post_form(
            &format!("{base}/devicecode"),
            &[("client_id", "cid"), ("scope", "Files.Read offline_access")],
        )
        .await;
    assert_eq!(dc.status, StatusCode::OK);
    let dc = dc.json();
    let code = dc["device_code"].as_str().unwrap();
    let poll = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ("client_id", "cid"),
        ("device_code", code),
    ];
    let mut answers = Vec::new();
    for _ in 0..4 {
        let r = c.post_form(&format!("{base}/token"), &poll).await;
        answers.push(r.json()["error"].as_str().unwrap_or("ok").to_owned());
        if r.status == StatusCode::OK {
            let t = r.json();
            let mut authed = Client::new(&sim);
            authed.token = t["access_token"].as_str().unwrap().to_owned();
            assert_eq!(authed.get("/me").await.status, StatusCode::OK);
            // Refresh rotates; the used token is refused afterwards.
            let rt = t["refresh_token"].as_str().unwrap().to_owned();
            let refresh = [
                ("grant_type", "refresh_token"),
                ("client_id", "cid"),
                ("refresh_token", rt.as_str()),
            ];
            let r1 = c.post_form(&format!("{base}/token"), &refresh).await;
            assert_eq!(r1.status, StatusCode::OK);
            assert_ne!(r1.json()["refresh_token"].as_str().unwrap(), rt);
            let r2 = c.post_form(&format!("{base}/token"), &refresh).await;
            assert_eq!(r2.json()["error"], "invalid_grant");
            assert!(
                r2.json()["error_description"]
                    .as_str()
                    .unwrap()
                    .starts_with("AADSTS700082")
            );
        }
    }
    assert_eq!(
        answers,
        [
            "slow_down",
            "authorization_pending",
            "authorization_pending",
            "ok"
        ]
    );
    assert_eq!(sim.refreshes(), 1);
    assert!(sim.device_polls_too_fast() >= 1);

    // Declined.
    sim.script_device_code(DeviceScript {
        pending: 0,
        slow_down: 0,
        outcome: DeviceOutcome::Decline,
    });
    let dc = c
        .post_form(
            &format!("{base}/devicecode"),
            &[("client_id", "cid"), ("scope", "Files.Read")],
        )
        .await
        .json();
    let poll = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ("client_id", "cid"),
        ("device_code", dc["device_code"].as_str().unwrap()),
    ];
    assert_eq!(
        c.post_form(&format!("{base}/token"), &poll).await.json()["error"],
        "authorization_declined"
    );

    // Authorization code with PKCE S256.
    let verifier = "a-verifier-that-is-long-enough-for-pkce-0123456789";
    use base64::Engine as _;
    use sha2::Digest as _;
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    let auth = c
        .send(c.http.get(format!(
            "{base}/authorize?client_id=cid&response_type=code&redirect_uri=http%3A%2F%2F127.0.0.1%3A5555&state=s1&scope=Files.Read%20offline_access&code_challenge={challenge}&code_challenge_method=S256"
        )))
        .await;
    assert_eq!(auth.status, StatusCode::FOUND);
    let loc = url::Url::parse(&auth.header("location").unwrap()).unwrap();
    assert_eq!(
        loc.path(),
        "/",
        "a redirect URI with no path comes back with a trailing slash"
    );
    let q: std::collections::HashMap<_, _> = loc.query_pairs().into_owned().collect();
    assert_eq!(q["state"], "s1");
    let redeem = |v: &'static str| {
        [
            ("grant_type", "authorization_code".to_owned()),
            ("client_id", "cid".to_owned()),
            ("code", q["code"].clone()),
            ("redirect_uri", "http://127.0.0.1:5555".to_owned()),
            ("code_verifier", v.to_owned()),
        ]
    };
    let wrong = redeem("wrong");
    let wrong: Vec<(&str, &str)> = wrong.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        c.post_form(&format!("{base}/token"), &wrong).await.json()["error"],
        "invalid_grant"
    );
    let right = redeem(verifier);
    let right: Vec<(&str, &str)> = right.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let t = c.post_form(&format!("{base}/token"), &right).await;
    assert_eq!(
        t.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&t.body)
    );
    assert!(t.json()["refresh_token"].is_string());

    sim.set_authorize_outcome(AuthorizeOutcome::Deny);
    let denied = c
        .send(c.http.get(format!("{base}/authorize?client_id=cid&response_type=code&redirect_uri=http%3A%2F%2Flocalhost%3A1%2Fcb&state=z")))
        .await;
    assert!(
        denied
            .header("location")
            .unwrap()
            .contains("error=access_denied")
    );
    assert_eq!(sim.requests(RequestKind::Authorize), 2);
}

#[test]
fn works_from_a_sync_test_and_a_generated_tree_lists_quickly() {
    let sim = Simulator::start_with(
        Tree::generated(GenSpec {
            folders: 200,
            files: 20_000,
            depth: 4,
            min_size: 0,
            max_size: 2000,
            seed: 3,
            no_hash_every: 0,
        }),
        SimConfig {
            worker_threads: 2,
            ..SimConfig::default()
        },
    );
    assert_eq!(sim.item_count(), 20_200);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let n = rt.block_on(async {
        let c = Client::new(&sim);
        let (items, _, _) = c.all_pages("/me/drive/root/delta?$top=1000").await;
        items.len()
    });
    assert_eq!(n, 20_201);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    sim.shutdown();
}

#[tokio::test]
// One simulator told in order; each knob's check needs the state the previous one left.
#[allow(clippy::too_many_lines)]
async fn latency_item_failures_moves_and_token_lifetime() {
    let sim = Simulator::start(
        Tree::personal()
            .file("A/a.txt", 10)
            .file("A/b.txt", 10)
            .folder("B"),
    );
    let c = Client::new(&sim);

    sim.set_latency(Duration::from_millis(150));
    let t = std::time::Instant::now();
    assert_eq!(c.get("/me/drive").await.status, StatusCode::OK);
    assert!(t.elapsed() >= Duration::from_millis(150));
    sim.set_latency(Duration::ZERO);

    // A failure aimed at one item leaves its siblings alone, and is not sent to the identity host.
    sim.fail_always(Failure::access_denied().for_item("A/a.txt"));
    sim.fail_next(1, Failure::server_error());
    assert_eq!(
        c.post_form(
            &format!("{}/common/oauth2/v2.0/devicecode", sim.auth_url()),
            &[("client_id", "x")]
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        c.get("/me/drive/root:/A/b.txt").await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        c.get("/me/drive/root:/A/a.txt").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        c.get(&format!(
            "/me/drive/items/{}/content",
            sim.item_id("A/a.txt")
        ))
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        c.get("/me/drive/root:/A/b.txt").await.status,
        StatusCode::OK
    );
    sim.clear_failures();

    let (_, _, last) = c
        .all_pages("/me/drive/root/delta?$select=id,name,parentReference,deleted")
        .await;
    let link = last["@odata.deltaLink"].as_str().unwrap().to_owned();
    assert!(
        link.contains("$select=id,name,parentReference,deleted"),
        "{link}"
    );
    let id = sim.item_id("A/a.txt");
    sim.move_item("A/a.txt", "B");
    assert_eq!(sim.item_id("B/a.txt"), id, "a move keeps the ID");
    let (changes, _, _) = c.all_pages(&link).await;
    let moved = changes
        .iter()
        .rev()
        .find(|v| v["id"] == id.as_str())
        .unwrap();
    assert_eq!(moved["parentReference"]["id"], sim.item_id("B").as_str());
    assert!(
        moved.get("size").is_none(),
        "$select carried into the deltaLink"
    );
    assert_eq!(sim.size("B"), 10);

    // Tokens from the token endpoint expire after the lifetime knob.
    sim.set_token_lifetime(Duration::from_millis(300));
    let rt = sim.issue_refresh_token();
    let r = c
        .post_form(
            &format!("{}/consumers/oauth2/v2.0/token", sim.auth_url()),
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "x"),
                ("refresh_token", &rt),
            ],
        )
        .await
        .json();
    let mut authed = Client::new(&sim);
    authed.token = r["access_token"].as_str().unwrap().to_owned();
    assert_eq!(authed.get("/me").await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let expired = authed.get("/me").await;
    assert_eq!(
        (expired.status, expired.code()),
        (
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken".to_owned()
        )
    );
    sim.revoke_refresh_tokens();
    let again = c
        .post_form(
            &format!("{}/consumers/oauth2/v2.0/token", sim.auth_url()),
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "x"),
                ("refresh_token", r["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(again.json()["error"], "invalid_grant");
}

#[tokio::test]
async fn listing_links_keep_the_dialect_of_the_select_so_every_page_carries_download_urls() {
    let mut tree = Tree::personal();
    for i in 0..5 {
        tree = tree.file(&format!("A/f{i}.bin"), 10);
    }
    let sim = Simulator::start(tree);
    let c = Client::new(&sim);
    let first = format!(
        "/drives/{}/items/{}/children?top=2&select=id,name,@microsoft.graph.downloadUrl",
        sim.drive_id(),
        sim.item_id("A")
    );
    let (items, pages, _) = c.all_pages(&first).await;
    assert_eq!((items.len(), pages), (5, 3));
    assert!(
        items
            .iter()
            .all(|v| v.get("@microsoft.graph.downloadUrl").is_some()),
        "{items:?}"
    );
    let (items, _, last) = c
        .all_pages("/me/drive/root/delta?select=id,name,file,@microsoft.graph.downloadUrl")
        .await;
    let files = items.iter().filter(|v| v.get("file").is_some());
    assert!(files.clone().count() == 5);
    assert!(
        files
            .clone()
            .all(|v| v.get("@microsoft.graph.downloadUrl").is_some())
    );
    let link = last["@odata.deltaLink"].as_str().unwrap();
    assert!(
        link.contains("?select=") && !link.contains("$select"),
        "{link}"
    );
}

#[tokio::test]
async fn content_can_answer_with_the_bytes_or_with_a_redirect_lacking_location() {
    let sim = Simulator::start(Tree::personal().file("a.bin", 100_000));
    let c = Client::new(&sim);
    let want = sim.content("a.bin");
    sim.set_content_answer(crate::ContentAnswer::Inline);
    let whole = c.get("/me/drive/root:/a.bin:/content").await;
    assert_eq!(whole.status, StatusCode::OK);
    assert_eq!(whole.body, want);
    let part = c
        .send(
            c.http
                .get(c.url("/me/drive/root:/a.bin:/content"))
                .bearer_auth(&c.token)
                .header("Range", "bytes=10-19"),
        )
        .await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.body, want[10..20]);
    assert_eq!(
        part.header("content-range").as_deref(),
        Some("bytes 10-19/100000")
    );
    sim.set_ignore_range(true);
    let ignored = c
        .send(
            c.http
                .get(c.url("/me/drive/root:/a.bin:/content"))
                .bearer_auth(&c.token)
                .header("Range", "bytes=10-19"),
        )
        .await;
    assert_eq!(
        (ignored.status, ignored.body.len()),
        (StatusCode::OK, 100_000)
    );
    assert_eq!(
        sim.downloads_of("a.bin"),
        3,
        "bodies served from /content are logged"
    );
    assert_eq!(sim.requests(RequestKind::Download), 0);

    sim.set_content_answer(crate::ContentAnswer::RedirectWithoutLocation);
    let bare = c.get("/me/drive/root:/a.bin:/content").await;
    assert_eq!(bare.status, StatusCode::FOUND);
    assert!(bare.header("location").is_none());
    let item = c.ok("/me/drive/root:/a.bin").await;
    let url = item["@microsoft.graph.downloadUrl"].as_str().unwrap();
    assert_eq!(c.download(url, None).await.body.len(), 100_000);
}

#[tokio::test]
async fn a_size_listed_wrong_comes_with_the_hashes_of_the_bytes_served() {
    let sim = Simulator::start(Tree::personal().file_with(
        "old.jpg",
        5_000,
        FileOpts::new().size_listed_wrong(4_700),
    ));
    let c = Client::new(&sim);
    let meta = c.ok("/me/drive/root:/old.jpg").await;
    assert_eq!(meta["size"], 5_000);
    let served = sim.content("old.jpg");
    assert_eq!(served.len(), 4_700);
    assert_eq!(
        meta["file"]["hashes"]["quickXorHash"],
        QuickXorHash::of(&served)
    );
    assert_eq!(sim.quick_xor("old.jpg"), QuickXorHash::of(&served));
    let url = meta["@microsoft.graph.downloadUrl"].as_str().unwrap();
    assert_eq!(c.download(url, None).await.body, served);
}

#[tokio::test]
async fn download_urls_can_carry_their_credential_in_the_path() {
    let sim = Simulator::start(Tree::personal().file("a.bin", 1_000));
    sim.set_url_credential_in_path(true);
    let c = Client::new(&sim);
    let r = c.get("/me/drive/root:/a.bin:/content").await;
    let loc = r.header("location").unwrap();
    let path = url::Url::parse(&loc).unwrap().path().to_owned();
    assert!(
        path.starts_with("/y4m") && path.ends_with("/a.bin"),
        "{loc}"
    );
    assert!(!loc.contains("tempauth"));
    assert_eq!(c.download(&loc, None).await.body, sim.content("a.bin"));
}

#[tokio::test]
async fn held_requests_wait_until_released() {
    let sim = Simulator::start(Tree::personal().file("a.bin", 1_000).file("b.bin", 1_000));
    sim.hold_requests(RequestKind::Download, Some("a.bin"));
    let c = Client::new(&sim);
    let a = c.ok("/me/drive/root:/a.bin").await["@microsoft.graph.downloadUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = c.ok("/me/drive/root:/b.bin").await["@microsoft.graph.downloadUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    let http = c.http.clone();
    let held =
        tokio::spawn(async move { http.get(&a).send().await.unwrap().bytes().await.unwrap() });
    assert_eq!(c.download(&b, None).await.body.len(), 1_000, "others pass");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sim.held_requests() == 0 {
        assert!(std::time::Instant::now() < deadline, "never held");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!held.is_finished());
    sim.release_requests(RequestKind::Download);
    assert_eq!(held.await.unwrap().len(), 1_000);
    assert_eq!(sim.held_requests(), 0);
}

#[tokio::test]
async fn ids_drift_in_spelling_and_every_spelling_is_accepted() {
    let sim = Simulator::start(Tree::personal().file("A/a.jpg", 10));
    let c = Client::new(&sim);
    let before = c.ok("/me/drive/root:/A/a.jpg").await;
    let id = before["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("5EA4B1C0D2E3F617!"), "{id}");
    sim.set_id_drift(crate::IdDrift {
        drive: crate::IdCase::Lower,
        references: crate::IdCase::Upper,
        item_ids: crate::IdCase::Lower,
        sea_root_id: true,
    });
    assert_eq!(c.ok("/me/drive").await["id"], "5ea4b1c0d2e3f617");
    let after = c.ok("/me/drive/root:/A/a.jpg").await;
    assert_eq!(after["id"], id.to_ascii_lowercase());
    assert_eq!(after["parentReference"]["driveId"], "5EA4B1C0D2E3F617");
    let root = c.ok("/me/drive/root").await;
    assert_eq!(
        root["id"],
        "5ea4b1c0d2e3f617!sea8cc6beffdb43d7976fbc7da445c639"
    );
    // Old and new spellings, and a drive ID that lost its leading zeros' worth of case, all resolve.
    for item in [id.clone(), id.to_ascii_lowercase()] {
        assert_eq!(
            c.ok(&format!("/drives/5ea4b1c0d2e3f617/items/{item}"))
                .await["name"],
            "a.jpg"
        );
    }
    let children = c
        .ok("/drives/5EA4B1C0D2E3F617/items/5ea4b1c0d2e3f617!sea8cc6beffdb43d7976fbc7da445c639/children")
        .await;
    assert_eq!(children["value"][0]["name"], "A");
}

#[tokio::test]
async fn delta_page_links_can_die_and_listings_can_loop() {
    let mut tree = Tree::personal();
    for i in 0..20 {
        tree = tree.file(&format!("F/f{i}.txt"), 1);
    }
    let sim = Simulator::start(tree);
    sim.set_page_cap(Some(5));
    let c = Client::new(&sim);
    let first = c.ok("/me/drive/root/delta").await;
    let next = first["@odata.nextLink"].as_str().unwrap().to_owned();
    sim.expire_delta_page_links(410);
    assert_eq!(c.get(&next).await.status, StatusCode::GONE);
    sim.expire_delta_page_links(400);
    assert_eq!(c.get(&next).await.status, StatusCode::BAD_REQUEST);
    // Links issued after the expiry work.
    let fresh = c.ok("/me/drive/root/delta").await;
    let fresh_next = fresh["@odata.nextLink"].as_str().unwrap().to_owned();
    assert!(c.ok(&fresh_next).await["value"].as_array().is_some());

    // The second page of F's children points at itself, with the same items.
    sim.set_paging_fault(Some(crate::PagingFault::RepeatSameLink), Some("F"));
    let p1 = c.ok("/me/drive/root:/F:/children").await;
    let link = p1["@odata.nextLink"].as_str().unwrap().to_owned();
    let p2 = c.ok(&link).await;
    assert_eq!(p2["@odata.nextLink"], link);
    // The same items (their download URLs, minted per answer, may differ by a millisecond of expiry).
    let ids = |page: &serde_json::Value| -> Vec<serde_json::Value> {
        page["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["id"].clone())
            .collect()
    };
    assert_eq!(ids(&c.ok(&link).await), ids(&p2));
    // Empty pages that point on forever.
    sim.set_paging_fault(Some(crate::PagingFault::EmptyPagesForever), Some("F"));
    let mut url = c.ok("/me/drive/root:/F:/children").await["@odata.nextLink"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..3 {
        let page = c.ok(&url).await;
        assert_eq!(page["value"].as_array().unwrap().len(), 0);
        let next = page["@odata.nextLink"].as_str().unwrap().to_owned();
        assert_ne!(next, url);
        url = next;
    }
}
