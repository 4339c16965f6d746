//! The client against a tiny canned HTTP server on 127.0.0.1:0: each connection gets the next canned
//! answer, and every request is recorded. (The full Graph simulator in `graphsim/` serves the integration
//! tests; this is only enough to pin down the retry shell and the header rules.)

use std::fmt::Write as _;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::StreamExt as _;
use futures_util::future::BoxFuture;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;
use crate::auth::{AccessToken, AuthError, StaticTokenSource};

#[derive(Clone, Copy)]
enum Mode {
    Full,
    /// Send this many body bytes, then close.
    CutAfter(usize),
    /// Send this many body bytes, then hold the connection open.
    StallAfter(usize),
}

#[derive(Clone)]
struct Canned {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    mode: Mode,
}

fn answer(status: u16) -> Canned {
    Canned {
        status,
        headers: Vec::new(),
        body: Vec::new(),
        mode: Mode::Full,
    }
}

impl Canned {
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
    fn json(mut self, body: &str) -> Self {
        self.body = body.as_bytes().to_vec();
        self.header("content-type", "application/json")
    }
    fn bytes(mut self, body: &[u8]) -> Self {
        self.body = body.to_vec();
        self
    }
    fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }
}

/// A request as the server saw it: the request line and lowercased headers.
#[derive(Debug, Clone)]
struct Seen {
    line: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

struct Server {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Bind first, then serve `answers` one connection each, in order.
async fn serve(answers: Vec<Canned>) -> Server {
    serve_made(|_| answers).await
}

/// Bind first, then serve the answers `make` makes for the server's base URL, one connection each, in order.
async fn serve_made(make: impl FnOnce(&str) -> Vec<Canned>) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let answers = make(&base);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        for canned in answers {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let text = String::from_utf8_lossy(&buf);
            let mut lines = text.split("\r\n");
            let line = lines.next().unwrap_or_default().to_owned();
            let headers = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            record.lock().unwrap().push(Seen { line, headers });
            let mut head = format!(
                "HTTP/1.1 {} X\r\nconnection: close\r\ncontent-length: {}\r\n",
                canned.status,
                canned.body.len()
            );
            for (n, v) in &canned.headers {
                let _ = write!(head, "{n}: {v}\r\n");
            }
            head.push_str("\r\n");
            let _ = socket.write_all(head.as_bytes()).await;
            match canned.mode {
                Mode::Full => {
                    let _ = socket.write_all(&canned.body).await;
                }
                Mode::CutAfter(n) => {
                    let _ = socket.write_all(&canned.body[..n]).await;
                }
                Mode::StallAfter(n) => {
                    let _ = socket.write_all(&canned.body[..n]).await;
                    let _ = socket.flush().await;
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
            let _ = socket.shutdown().await;
        }
    });
    Server { base, seen }
}

/// Hands out `t1`, then `t2` after a rejection, and so on; counts rejections.
#[derive(Default)]
struct Rotating {
    generation: AtomicUsize,
    rejects: AtomicUsize,
}

impl TokenSource for Rotating {
    fn access_token(&self) -> BoxFuture<'_, Result<AccessToken, AuthError>> {
        let n = self.generation.load(Ordering::SeqCst) + 1;
        Box::pin(async move { Ok(AccessToken::new(format!("t{n}"))) })
    }
    fn reject(&self, _rejected: &AccessToken) -> BoxFuture<'_, Result<(), AuthError>> {
        self.rejects.fetch_add(1, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(()) })
    }
}

fn quick(base: &str) -> GraphOptions {
    GraphOptions {
        base_url: format!("{base}/v1.0"),
        request_timeout: Duration::from_secs(5),
        read_idle_timeout: Duration::from_millis(200),
        retry: RetryPolicy {
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            default_throttle_pause: Duration::from_millis(50),
            ..RetryPolicy::default()
        },
        ..GraphOptions::default()
    }
}

fn client(server: &Server, tokens: Arc<dyn TokenSource>) -> GraphClient {
    GraphClient::new(quick(&server.base), tokens).unwrap()
}

fn rotating() -> Arc<Rotating> {
    Arc::new(Rotating::default())
}

const PAGE: &str = r#"{"value":[{"id":"a","name":"A b+c.jpg","size":3,"file":{}},{"id":"b","folder":{}}],
    "@odata.nextLink":"NEXT"}"#;

fn drive() -> DriveId {
    DriveId::from("b!drive")
}

#[test]
fn paths_are_encoded_segment_by_segment() {
    let cases = [
        ("/My Photos/a+b#1/100%", "/My%20Photos/a%2Bb%231/100%25"),
        ("/", ""),
        ("", ""),
        ("//a//b/", "/a/b"),
        ("日本/ü", "/%E6%97%A5%E6%9C%AC/%C3%BC"),
        ("it's (1) [x]~.txt", "/it%27s%20%281%29%20%5Bx%5D~.txt"),
        ("a?b&c=d", "/a%3Fb%26c%3Dd"),
    ];
    for (path, want) in cases {
        assert_eq!(encode_path(path), want, "{path}");
    }
    assert_eq!(encode_id("7DDA670C5E7F91DF!1234"), "7DDA670C5E7F91DF!1234");
    assert_eq!(encode_id("host.com,g1,g2"), "host.com,g1,g2");
    assert_eq!(encode_id("a/b c+d"), "a%2Fb%20c%2Bd");
    assert_eq!(
        encode_id("guest_x.com#EXT#@t.onmicrosoft.com"),
        "guest_x.com%23EXT%23@t.onmicrosoft.com"
    );
}

#[test]
fn a_bad_base_url_is_a_setup_error() {
    for bad in ["not a url", "ftp://x/v1.0", "file:///tmp"] {
        let err = GraphClient::new(
            GraphOptions {
                base_url: bad.to_owned(),
                ..GraphOptions::default()
            },
            rotating(),
        )
        .unwrap_err();
        assert!(matches!(err, GraphError::Setup { .. }), "{bad}: {err}");
    }
}

#[tokio::test]
async fn a_first_page_of_children_asks_for_1000_selected_items_with_the_token() {
    let server = serve(vec![answer(200).json(PAGE)]).await;
    let graph = client(&server, rotating());
    let page = graph
        .children(&drive(), &ItemId::from("7D!1"), None)
        .await
        .unwrap();
    assert_eq!(page.items().len(), 2);
    assert_eq!(page.value[0].name.as_deref(), Some("A b+c.jpg"));
    assert_eq!(page.next_link.as_deref(), Some("NEXT"));
    let seen = server.seen();
    assert_eq!(
        seen[0].line,
        format!(
            "GET /v1.0/drives/b!drive/items/7D!1/children?top=1000&select={ITEM_SELECT} HTTP/1.1"
        )
    );
    assert_eq!(seen[0].header("authorization"), Some("Bearer t1"));
    assert!(
        seen[0]
            .header("user-agent")
            .unwrap()
            .starts_with("ISV|odbackup|")
    );
}

#[tokio::test]
async fn a_refused_bare_select_is_asked_again_with_dollar_and_then_kept_so() {
    let refused = r#"{"error":{"code":"invalidRequest","message":"Invalid request"}}"#;
    let server = serve(vec![
        // The vault-like 400 the `$` form gets too: the dialect stays bare.
        answer(400).json(refused),
        answer(400).json(refused),
        // A refusal of the bare form only: `$` from then on.
        answer(400).json(refused),
        answer(200).json(PAGE),
        answer(200).json(PAGE),
    ])
    .await;
    let graph = client(&server, rotating());
    let folder = ItemId::from("7D!1");
    let err = graph.children(&drive(), &folder, None).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    graph.children(&drive(), &folder, None).await.unwrap();
    graph.children(&drive(), &folder, None).await.unwrap();
    let lines: Vec<String> = server.seen().into_iter().map(|s| s.line).collect();
    let bare = format!(
        "GET /v1.0/drives/b!drive/items/7D!1/children?top=1000&select={ITEM_SELECT} HTTP/1.1"
    );
    let dollar = format!(
        "GET /v1.0/drives/b!drive/items/7D!1/children?$top=1000&$select={ITEM_SELECT} HTTP/1.1"
    );
    assert_eq!(
        lines,
        [&bare, &dollar, &bare, &dollar, &dollar].map(String::clone)
    );
}

#[tokio::test]
async fn a_saved_next_link_is_followed_verbatim() {
    let server = serve(vec![answer(200).json(r#"{"value":[]}"#)]).await;
    let graph = client(&server, rotating());
    let link = format!(
        "{}/v1.0/drives/b!drive/items/x/children?$skiptoken=Paged%3dTRUE%26p%3d2",
        server.base
    );
    let page = graph
        .children(&drive(), &ItemId::from("x"), Some(&link))
        .await
        .unwrap();
    assert!(page.is_last());
    assert_eq!(
        server.seen()[0].line,
        "GET /v1.0/drives/b!drive/items/x/children?$skiptoken=Paged%3dTRUE%26p%3d2 HTTP/1.1"
    );
}

#[tokio::test]
async fn a_foreign_next_link_is_refused_before_anything_is_sent() {
    let server = serve(vec![]).await;
    let graph = client(&server, rotating());
    for link in [
        "https://evil.example/v1.0/x?$skiptoken=1",
        "http://127.0.0.1:1/v1.0/x",
    ] {
        let err = graph
            .children(&drive(), &ItemId::from("x"), Some(link))
            .await
            .unwrap_err();
        assert!(matches!(err, GraphError::ForeignLink { .. }), "{err}");
        let err = graph
            .delta(&drive(), &ItemId::from("x"), Some(link))
            .await
            .unwrap_err();
        assert!(matches!(err, GraphError::ForeignLink { .. }), "{err}");
    }
    assert_eq!(graph.stats().requests, 0);
}

#[tokio::test]
async fn a_429_pauses_the_client_for_its_retry_after_then_succeeds() {
    let server = serve(vec![
        answer(429)
            .header("retry-after", "1")
            .json(r#"{"error":{"code":"activityLimitReached","message":"throttled"}}"#),
        answer(200).json(PAGE),
    ])
    .await;
    let graph = client(&server, rotating());
    let start = Instant::now();
    graph
        .children(&drive(), &ItemId::from("x"), None)
        .await
        .unwrap();
    assert!(start.elapsed() >= Duration::from_millis(950));
    let stats = graph.stats();
    assert_eq!(
        (stats.requests, stats.retries, stats.throttle_events),
        (2, 1, 1)
    );
    assert!(
        stats.throttle_wait_total >= Duration::from_millis(950),
        "{stats:?}"
    );
}

#[tokio::test]
async fn a_503_without_retry_after_waits_the_default_pause() {
    let server = serve(vec![answer(503), answer(200).json(PAGE)]).await;
    let graph = client(&server, rotating());
    let start = Instant::now();
    graph
        .children(&drive(), &ItemId::from("x"), None)
        .await
        .unwrap();
    assert!(start.elapsed() >= Duration::from_millis(45));
    assert_eq!(graph.stats().throttle_events, 1);
}

#[tokio::test]
async fn server_errors_back_off_then_give_up_after_max_attempts() {
    let body = r#"{"error":{"code":"generalException","message":"oops","innerError":{"code":"cannotSnapshotTree","request-id":"r9"}}}"#;
    let server = serve(vec![answer(500).json(body); 4]).await;
    let graph = GraphClient::new(
        {
            let mut options = quick(&server.base);
            options.retry.max_attempts = 3;
            options
        },
        rotating(),
    )
    .unwrap();
    let err = graph
        .children(&drive(), &ItemId::from("x"), None)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(500));
    assert_eq!(err.code(), Some("cannotSnapshotTree"));
    assert!(err.has_code("GENERALEXCEPTION") && err.is_transient());
    assert_eq!(
        err.to_string(),
        "listing children of item x: HTTP 500 (cannotSnapshotTree): oops [request-id r9]"
    );
    assert_eq!((graph.stats().requests, graph.stats().retries), (3, 2));
}

#[tokio::test]
async fn a_404_is_not_retried() {
    let server = serve(vec![answer(404).json(
        r#"{"error":{"code":"itemNotFound","message":"Item does not exist"}}"#,
    )])
    .await;
    let graph = client(&server, rotating());
    let err = graph
        .item(&drive(), &ItemId::from("gone"))
        .await
        .unwrap_err();
    assert!(err.has_code("itemnotfound") && !err.is_transient() && !err.is_auth());
    assert_eq!(graph.stats().requests, 1);
}

#[tokio::test]
async fn a_reset_mid_body_is_retried() {
    let server = serve(vec![
        answer(200).json(PAGE).mode(Mode::CutAfter(10)),
        answer(200).json(PAGE),
    ])
    .await;
    let graph = client(&server, rotating());
    let page = graph
        .children(&drive(), &ItemId::from("x"), None)
        .await
        .unwrap();
    assert_eq!(page.value.len(), 2);
    assert_eq!(graph.stats().retries, 1);
}

#[tokio::test]
async fn a_401_refreshes_the_token_once_and_retries() {
    let server = serve(vec![
        answer(401).json(r#"{"error":{"code":"InvalidAuthenticationToken","message":"Access token has expired."}}"#),
        answer(200).json(PAGE),
    ])
    .await;
    let tokens = rotating();
    let graph = client(&server, tokens.clone());
    graph
        .children(&drive(), &ItemId::from("x"), None)
        .await
        .unwrap();
    let seen = server.seen();
    assert_eq!(seen[0].header("authorization"), Some("Bearer t1"));
    assert_eq!(seen[1].header("authorization"), Some("Bearer t2"));
    assert_eq!(tokens.rejects.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_401_that_persists_after_one_refresh_is_a_refused_sign_in_after_a_few_attempts() {
    let body = r#"{"error":{"code":"InvalidAuthenticationToken","message":"nope"}}"#;
    let server = serve(vec![answer(401).json(body); 8]).await;
    let tokens = rotating();
    let graph = client(&server, tokens.clone());
    let err = graph
        .children(&drive(), &ItemId::from("x"), None)
        .await
        .unwrap_err();
    assert!(
        err.is_auth() && matches!(err, GraphError::Auth(AuthError::StillRefused { .. })),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("odbackup login") && text.contains("InvalidAuthenticationToken"),
        "{text}"
    );
    assert_eq!(
        tokens.rejects.load(Ordering::SeqCst),
        1,
        "one refresh, not a loop"
    );
    let attempts = RetryPolicy::default().max_unauthorized_attempts;
    assert_eq!(graph.stats().requests, 1 + u64::from(attempts));
}

#[tokio::test]
async fn a_401_to_a_freshly_refreshed_token_is_retried_with_backoff() {
    let body =
        r#"{"error":{"code":"InvalidAuthenticationToken","message":"Unable to initialize RPS"}}"#;
    let server = serve(vec![
        answer(401).json(body),
        answer(401).json(body),
        answer(401).json(body),
        answer(200).json(PAGE),
    ])
    .await;
    let tokens = rotating();
    let graph = client(&server, tokens.clone());
    graph
        .children(&drive(), &ItemId::from("x"), None)
        .await
        .unwrap();
    assert_eq!(tokens.rejects.load(Ordering::SeqCst), 1);
    let seen = server.seen();
    assert_eq!(seen[0].header("authorization"), Some("Bearer t1"));
    assert!(
        seen[1..]
            .iter()
            .all(|s| s.header("authorization") == Some("Bearer t2"))
    );
}

#[tokio::test]
async fn a_transient_401_to_a_static_token_is_retried_as_it_is() {
    let body =
        r#"{"error":{"code":"InvalidAuthenticationToken","message":"Unable to initialize RPS"}}"#;
    let server = serve(vec![
        answer(401).json(body),
        answer(401).json(body),
        answer(200).json(PAGE),
    ])
    .await;
    let graph = client(&server, Arc::new(StaticTokenSource::new("static".into())));
    graph
        .children(&drive(), &ItemId::from("x"), None)
        .await
        .unwrap();
    assert_eq!(graph.stats().requests, 3);
}

#[tokio::test]
async fn a_refused_static_token_tells_the_user_what_to_do() {
    let server = serve(vec![answer(401); 4]).await;
    let graph = client(
        &server,
        Arc::new(StaticTokenSource::new("secret-token".into())),
    );
    let err = graph.drive(&DriveSelector::Me).await.unwrap_err();
    assert!(err.is_auth());
    assert_eq!(
        graph.stats().requests,
        4,
        "a few attempts, then it is refused"
    );
    let text = err.to_string();
    assert!(
        text.contains("ODBACKUP_ACCESS_TOKEN") && text.contains("odbackup login"),
        "{text}"
    );
    assert!(!format!("{text} {err:?}").contains("secret-token"));
}

#[tokio::test]
async fn a_403_is_permission_not_sign_in() {
    let server =
        serve(vec![answer(403).json(
            r#"{"error":{"code":"accessDenied","message":"Access denied"}}"#,
        )])
        .await;
    let tokens = rotating();
    let graph = client(&server, tokens.clone());
    let err = graph
        .special_folder(&drive(), "cameraroll")
        .await
        .unwrap_err();
    assert!(!err.is_auth() && !err.is_transient() && err.status() == Some(403));
    assert_eq!(tokens.rejects.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn malformed_json_is_asked_for_again_and_then_names_the_endpoint() {
    // Cut short once, then whole: the second answer is used.
    let server = serve(vec![
        answer(200).json(r#"{"value": [{"id":"#),
        answer(200).json(PAGE),
    ])
    .await;
    let graph = client(&server, rotating());
    let page = graph
        .children(&drive(), &ItemId::from("X"), None)
        .await
        .unwrap();
    assert_eq!(page.value.len(), 2);

    // Wrong every time: three tries, then the error says what was being read and where the JSON broke.
    let bad = || answer(200).json(r#"{"value": [,]}"#);
    let server = serve(vec![bad(), bad(), bad()]).await;
    let graph = client(&server, rotating());
    let err = graph
        .children(&drive(), &ItemId::from("X"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::Decode { .. }));
    assert!(
        err.to_string()
            .starts_with("listing children of item X: the service sent invalid JSON: expected value at line 1 column 12"),
        "{err}"
    );
    assert_eq!(server.seen.lock().unwrap().len(), 3, "asked three times");
}

#[tokio::test]
async fn an_unreachable_host_fails_fast_and_names_the_host() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let graph = GraphClient::new(
        {
            let mut options = quick(&format!("http://{closed}"));
            options.retry.max_connect_attempts = 2;
            options
        },
        rotating(),
    )
    .unwrap();
    let start = Instant::now();
    let err = graph.drive(&DriveSelector::Me).await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert_eq!(
        err.to_string(),
        "could not reach 127.0.0.1: connection refused; check --graph-url and your network"
    );
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(graph.stats().requests, 2);
}

#[tokio::test]
async fn delta_410_asks_for_a_resync() {
    let server = serve(vec![answer(410).header("location", "RESTART").json(
        r#"{"error":{"code":"resyncRequired","message":"Resync required."}}"#,
    )])
    .await;
    let graph = client(&server, rotating());
    let link = format!("{}/v1.0/drives/b!drive/root/delta?token=old", server.base);
    let err = graph
        .delta(&drive(), &ItemId::from("root"), Some(&link))
        .await
        .unwrap_err();
    match &err {
        GraphError::ResyncRequired {
            code, restart_link, ..
        } => {
            assert_eq!(code.as_deref(), Some("resyncRequired"));
            assert_eq!(restart_link, &None); // "RESTART" is not on our origin
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.status(), Some(410));
}

#[tokio::test]
async fn a_site_is_found_by_path_then_its_library_is_read() {
    let server = serve(vec![
        answer(200).json(r#"{"id":"contoso.sharepoint.com,1111,2222","name":"Marketing"}"#),
        answer(200).json(
            r#"{"id":"b!lib","driveType":"documentLibrary","owner":{"group":{"displayName":"Marketing"}}}"#,
        ),
    ])
    .await;
    let graph = client(&server, rotating());
    let drive = graph
        .drive(&DriveSelector::Site {
            site: SiteRef::parse("contoso.sharepoint.com:/sites/Marketing Team").unwrap(),
            library: None,
        })
        .await
        .unwrap();
    assert_eq!(
        (drive.id.as_str(), drive.drive_type.as_str()),
        ("b!lib", "documentLibrary")
    );
    assert_eq!(drive.owner.as_deref(), Some("Marketing"));
    let seen = server.seen();
    assert_eq!(
        seen[0].line,
        "GET /v1.0/sites/contoso.sharepoint.com:/sites/Marketing%20Team HTTP/1.1"
    );
    assert_eq!(
        seen[1].line,
        "GET /v1.0/sites/contoso.sharepoint.com,1111,2222/drive HTTP/1.1"
    );
}

#[tokio::test]
async fn a_library_is_picked_by_its_name_or_its_address_and_a_missing_one_names_the_others() {
    let site = r#"{"id":"contoso.sharepoint.com,1111,2222","displayName":"Team"}"#;
    let drives = r#"{"value":[
        {"id":"b!docs","name":"Documents","driveType":"documentLibrary","webUrl":"https://contoso.sharepoint.com/sites/Team/Shared%20Documents"},
        {"id":"b!arch","name":"Archive","driveType":"documentLibrary","webUrl":"https://contoso.sharepoint.com/sites/Team/Archive"}]}"#;
    let server = serve(vec![
        answer(200).json(site),
        answer(200).json(drives),
        answer(200).json(site),
        answer(200).json(drives),
        answer(200).json(site),
        answer(200).json(drives),
    ])
    .await;
    let graph = client(&server, rotating());
    let pick = |library: &str| DriveSelector::Site {
        site: SiteRef::parse("https://contoso.sharepoint.com/sites/Team").unwrap(),
        library: Some(library.to_owned()),
    };
    assert_eq!(
        graph.drive(&pick("archive")).await.unwrap().id.as_str(),
        "b!arch"
    );
    assert_eq!(
        graph
            .drive(&pick("Shared Documents"))
            .await
            .unwrap()
            .id
            .as_str(),
        "b!docs"
    );
    let err = graph.drive(&pick("Photos")).await.unwrap_err();
    assert!(matches!(err, GraphError::NoSuchLibrary { .. }), "{err}");
    assert!(err.to_string().contains("Documents, Archive"), "{err}");
    assert_eq!(
        server.seen()[1].line,
        "GET /v1.0/sites/contoso.sharepoint.com,1111,2222/drives HTTP/1.1"
    );
}

#[tokio::test]
async fn item_by_path_encodes_each_segment() {
    let server = serve(vec![answer(200).json(r#"{"id":"p","name":"a+b #1.txt"}"#)]).await;
    let graph = client(&server, rotating());
    graph
        .item_by_path(&drive(), "/Docs/a+b #1.txt")
        .await
        .unwrap();
    assert_eq!(
        server.seen()[0].line,
        format!(
            "GET /v1.0/drives/b!drive/root:/Docs/a%2Bb%20%231.txt:?select={ITEM_SELECT} HTTP/1.1"
        )
    );
}

#[tokio::test]
async fn content_resolves_to_a_url_and_the_download_never_carries_the_token() {
    let host = serve(vec![
        answer(206)
            .header("content-range", "bytes 5-9/10")
            .bytes(b"56789"),
    ])
    .await;
    let location = format!("{}/dl/file.bin?tempauth=SECRET", host.base);
    let graph_server = serve(vec![answer(302).header("location", location.clone())]).await;
    let graph = client(&graph_server, rotating());
    let url = graph
        .content_url(&drive(), &ItemId::from("f!1"), false)
        .await
        .unwrap();
    assert_eq!(url.expose(), location);
    assert!(!format!("{url} {url:?}").contains("SECRET"));
    assert_eq!(
        graph_server.seen()[0].line,
        "GET /v1.0/drives/b!drive/items/f!1/content HTTP/1.1"
    );
    assert_eq!(
        graph_server.seen()[0].header("authorization"),
        Some("Bearer t1")
    );

    let download = graph.download(&url, 5).await.unwrap();
    assert!(download.partial);
    assert_eq!(
        (download.start, download.total, download.content_length),
        (5, Some(10), Some(5))
    );
    let body: Vec<u8> = download
        .body
        .map(|chunk| chunk.unwrap().to_vec())
        .concat()
        .await;
    assert_eq!(body, b"56789");
    let seen = &host.seen()[0];
    assert_eq!(seen.line, "GET /dl/file.bin?tempauth=SECRET HTTP/1.1");
    assert_eq!(seen.header("authorization"), None);
    assert_eq!(seen.header("range"), Some("bytes=5-"));
}

#[tokio::test]
async fn a_200_to_content_is_unexpected_not_a_download() {
    let server = serve(vec![answer(200).bytes(b"the bytes")]).await;
    let graph = client(&server, rotating());
    let err = graph
        .content_url(&drive(), &ItemId::from("f"), false)
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::Unexpected { .. }), "{err}");
}

#[tokio::test]
async fn a_download_ignoring_the_range_starts_at_zero() {
    let host = serve(vec![
        answer(200).bytes(b"0123456789"),
        answer(200).bytes(b""),
    ])
    .await;
    let graph = client(&host, rotating());
    let url = DownloadUrl::new(format!("{}/dl?sig=1", host.base));
    let download = graph.download(&url, 5).await.unwrap();
    assert!(!download.partial);
    assert_eq!((download.start, download.total), (0, Some(10)));
    // From byte 0 no Range is sent.
    let _ = graph.download(&url, 0).await.unwrap();
    assert_eq!(host.seen()[1].header("range"), None);
}

#[tokio::test]
async fn expired_urls_and_refused_ranges_have_their_own_errors() {
    let host = serve(vec![
        answer(403),
        answer(401),
        answer(416).header("content-range", "bytes */10"),
    ])
    .await;
    let graph = client(&host, rotating());
    let url = DownloadUrl::new(format!("{}/dl?tempauth=SECRET", host.base));
    for status in [403, 401] {
        let err = graph.download(&url, 0).await.unwrap_err();
        assert!(
            matches!(err, GraphError::DownloadUrlExpired { status: s, .. } if s == status),
            "{err}"
        );
    }
    let err = graph.download(&url, 20).await.unwrap_err();
    assert!(matches!(
        err,
        GraphError::RangeNotSatisfiable {
            from: 20,
            total: Some(10)
        }
    ));
    assert_eq!(err.status(), Some(416));
    assert_eq!(graph.stats().retries, 0);
}

#[tokio::test]
async fn download_errors_are_retried_under_the_same_policy() {
    let host = serve(vec![
        answer(503).header("retry-after", "0"),
        answer(502),
        answer(200).bytes(b"ok"),
    ])
    .await;
    let graph = client(&host, rotating());
    let url = DownloadUrl::new(format!("{}/dl?tempauth=SECRET", host.base));
    let download = graph.download(&url, 0).await.unwrap();
    let body: Vec<u8> = download.body.map(|c| c.unwrap().to_vec()).concat().await;
    assert_eq!(body, b"ok");
    let stats = graph.stats();
    // (`Retry-After: 0` asks for no wait: the 503 is a server error, not a throttling episode.)
    assert_eq!(
        (stats.requests, stats.retries, stats.throttle_events),
        (3, 2, 0)
    );
}

#[tokio::test]
async fn a_stalled_download_ends_with_stalled_and_no_secret() {
    let host = serve(vec![
        answer(200).bytes(&[7u8; 100]).mode(Mode::StallAfter(10)),
    ])
    .await;
    let graph = client(&host, rotating());
    let url = DownloadUrl::new(format!("{}/dl?tempauth=SECRET", host.base));
    let mut download = graph.download(&url, 0).await.unwrap();
    let mut got = 0;
    let err = loop {
        match download.body.next().await {
            Some(Ok(chunk)) => got += chunk.len(),
            Some(Err(e)) => break e,
            None => panic!("the body ended without an error"),
        }
    };
    assert_eq!(got, 10);
    assert!(
        matches!(err, GraphError::Stalled { .. }) && err.is_timeout(),
        "{err}"
    );
    assert!(!err.to_string().contains("SECRET"), "{err}");
    assert!(download.body.next().await.is_none());
}

#[tokio::test]
async fn a_cut_download_body_is_a_network_error_without_the_url_query() {
    let host = serve(vec![
        answer(200).bytes(&[7u8; 100]).mode(Mode::CutAfter(10)),
    ])
    .await;
    let graph = client(&host, rotating());
    let url = DownloadUrl::new(format!("{}/dl?tempauth=SECRET", host.base));
    let download = graph.download(&url, 0).await.unwrap();
    let results: Vec<_> = download.body.collect().await;
    let err = results.into_iter().find_map(Result::err).unwrap();
    assert!(
        matches!(err, GraphError::Network { .. }) && err.is_transient(),
        "{err}"
    );
    assert!(!format!("{err} {err:?}").contains("SECRET"), "{err:?}");
}

#[tokio::test]
async fn nearly_spent_rate_limits_pause_the_client() {
    let server = serve(vec![
        answer(200)
            .header("ratelimit-limit", "100")
            .header("ratelimit-remaining", "2")
            .header("ratelimit-reset", "1")
            .json(PAGE),
    ])
    .await;
    let graph = client(&server, rotating());
    graph
        .children(&drive(), &ItemId::from("x"), None)
        .await
        .unwrap();
    let stats = graph.stats();
    assert_eq!(stats.throttle_events, 0);
    assert!(
        stats.throttle_wait_total >= Duration::from_millis(950),
        "{stats:?}"
    );
}

#[tokio::test]
async fn a_user_listing_of_empty_pages_that_still_point_on_is_given_up_after_a_few() {
    // Each empty page points at a new page (a new skiptoken), so only the stall ends it.
    let server = serve_made(|base| {
        (0..10)
            .map(|n| {
                answer(200).json(&format!(
                    r#"{{"value":[],"@odata.nextLink":"{base}/v1.0/users?$skiptoken={n}"}}"#
                ))
            })
            .collect()
    })
    .await;
    let graph = client(&server, rotating());
    let err = graph.users(|_| {}).await.unwrap_err();
    assert!(matches!(err, GraphError::Unexpected { .. }), "{err}");
    assert_eq!(
        server.seen().len(),
        paging::MAX_PAGES_WITHOUT_PROGRESS as usize
    );
}

#[tokio::test]
async fn while_a_pause_longer_than_a_run_waits_lasts_every_request_fails_at_once_unsent() {
    let server = serve(vec![
        answer(429)
            .header("retry-after", "1800")
            .json(r#"{"error":{"code":"activityLimitReached","message":"throttled"}}"#),
        answer(200).json(PAGE),
    ])
    .await;
    let graph = client(&server, rotating());
    let err = graph
        .children(&drive(), &ItemId::from("x"), None)
        .await
        .unwrap_err();
    assert!(err.told_to_wait().is_some(), "{err}");
    // Another request of the same client (the crawl's next page, say) does not sit at the gate for half an
    // hour: it is refused the same way, and nothing is sent.
    let start = Instant::now();
    let err = graph
        .delta(&drive(), &ItemId::from("x"), None)
        .await
        .unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(1));
    let wait = err.told_to_wait().expect("told to wait");
    assert!(
        wait > Duration::from_secs(1790) && wait <= Duration::from_secs(1800),
        "{wait:?}"
    );
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn an_answer_longer_than_the_cap_is_cut_off_there_and_a_shorter_one_read_whole() {
    let body = vec![b'x'; 100_000];
    let server = serve(vec![answer(200).bytes(&body), answer(200).bytes(&body)]).await;
    let http = reqwest::Client::new();
    let capped = super::transport::read_capped(http.get(&server.base).send().await.unwrap(), 1_000)
        .await
        .unwrap();
    assert_eq!(capped.len(), 1_000);
    let whole =
        super::transport::read_capped(http.get(&server.base).send().await.unwrap(), 100_000)
            .await
            .unwrap();
    assert_eq!(whole.len(), 100_000);
}
