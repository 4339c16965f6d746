//! The loopback listener the browser is redirected to: one `GET` per connection, read with a size and time
//! limit, classified by a pure function, answered with a small page and closed.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::token::clean_description;

/// The loopback listener reads at most this much of a request: the request line and headers only.
const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// A browser connection that sends nothing for this long is dropped (and the listener keeps waiting).
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The listener on a random loopback port: 127.0.0.1, and `[::1]` on the same port when it is free (browsers
/// may try `localhost` over IPv6 first).
#[derive(Debug)]
pub(super) struct Listener {
    v4: TcpListener,
    v6: Option<TcpListener>,
    port: u16,
    /// Each connection is read on its own task and its request comes back here: a browser's speculative
    /// preconnect that never sends a request must not hold up the real redirect behind it.
    requests: mpsc::Sender<(TcpStream, String)>,
    arrived: mpsc::Receiver<(TcpStream, String)>,
}

impl Listener {
    /// Listen on `127.0.0.1:0` (and `[::1]` on the port it got, where that is free).
    pub(super) async fn bind() -> std::io::Result<Self> {
        let v4 = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let port = v4.local_addr()?.port();
        let v6 = TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, port)))
            .await
            .ok();
        let (requests, arrived) = mpsc::channel(8);
        Ok(Self {
            v4,
            v6,
            port,
            requests,
            arrived,
        })
    }

    /// The port both listeners are on.
    pub(super) fn port(&self) -> u16 {
        self.port
    }

    /// The next request's connection and `GET` target. Connections that send nothing readable within
    /// [`REQUEST_READ_TIMEOUT`] are dropped without an answer.
    pub(super) async fn next_request(&mut self) -> std::io::Result<(TcpStream, String)> {
        loop {
            tokio::select! {
                accepted = accept(&self.v4, self.v6.as_ref()) => {
                    let mut stream = accepted?;
                    let requests = self.requests.clone();
                    tokio::spawn(async move {
                        let read =
                            tokio::time::timeout(REQUEST_READ_TIMEOUT, read_request_target(&mut stream));
                        if let Ok(Some(target)) = read.await {
                            let _ = requests.send((stream, target)).await;
                        }
                    });
                }
                Some(request) = self.arrived.recv() => return Ok(request),
            }
        }
    }
}

async fn accept(v4: &TcpListener, v6: Option<&TcpListener>) -> std::io::Result<TcpStream> {
    let (stream, _) = match v6 {
        Some(v6) => tokio::select! {
            r = v4.accept() => r?,
            r = v6.accept() => r?,
        },
        None => v4.accept().await?,
    };
    Ok(stream)
}

/// What one request on the loopback listener turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Redirect {
    /// The sign-in's answer: an authorization code.
    Code(String),
    /// The sign-in's answer: an OAuth error.
    Error { code: String, description: String },
    /// Something carrying a `code` or `error` but not our `state`.
    StateMismatch,
    /// Anything else (favicon, a reload, a probe): answer 404 and keep waiting.
    Other,
}

pub(super) const PAGE_SIGNED_IN: &str = "<!doctype html><meta charset=\"utf-8\"><title>odbackup</title>\
    <p>Signed in; you can close this window and return to the terminal.</p>";
pub(super) const PAGE_FAILED: &str = "<!doctype html><meta charset=\"utf-8\"><title>odbackup</title>\
    <p>Sign-in did not complete. The terminal says why; you can close this window.</p>";
pub(super) const PAGE_NOT_HERE: &str = "<!doctype html><meta charset=\"utf-8\"><title>odbackup</title>\
    <p>Not found. odbackup is waiting for the sign-in page to send you back.</p>";

/// request target of a `GET`. `None` for anything unreadable.
async fn read_request_target(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() >= MAX_REQUEST_HEAD {
            break;
        }
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line_end = head.iter().position(|&b| b == b'\r' || b == b'\n')?;
    let line = std::str::from_utf8(&head[..line_end]).ok()?;
    let mut parts = line.split(' ');
    let (method, target) = (parts.next()?, parts.next()?);
    (method == "GET").then(|| target.to_owned())
}

/// Decide what a request target on the loopback listener is. Pure, so the cases are table-tested.
pub(super) fn parse_redirect(target: &str, expected_state: &str) -> Redirect {
    // Browsers send origin-form (`/?code=…`); tolerate absolute-form too.
    let origin_form = target
        .strip_prefix("http://")
        .map_or(target, |rest| rest.find('/').map_or("/", |i| &rest[i..]));
    let (path, query) = origin_form.split_once('?').unwrap_or((origin_form, ""));
    if path != "/" {
        return Redirect::Other;
    }
    let (mut code, mut error, mut description, mut state) = (None, None, None, None);
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "code" => code = Some(value.into_owned()),
            "error" => error = Some(value.into_owned()),
            "error_description" => description = Some(value.into_owned()),
            "state" => state = Some(value.into_owned()),
            _ => {}
        }
    }
    if code.is_none() && error.is_none() {
        return Redirect::Other;
    }
    if state.as_deref() != Some(expected_state) {
        return Redirect::StateMismatch;
    }
    match (code, error) {
        (_, Some(code)) => Redirect::Error {
            code,
            description: clean_description(description.as_deref().unwrap_or(""), &[]),
        },
        (Some(code), None) => Redirect::Code(code),
        (None, None) => Redirect::Other,
    }
}

/// Answer the browser and close the connection. Failures are ignored: the browser may be gone already,
/// and the terminal is where the outcome is reported.
pub(super) async fn respond(stream: &mut TcpStream, status: &str, body: &str) {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_targets_are_classified() {
        let cases: &[(&str, Redirect)] = &[
            ("/?code=abc&state=S1", Redirect::Code("abc".into())),
            (
                "http://localhost:1234/?state=S1&code=a%2Fb",
                Redirect::Code("a/b".into()),
            ),
            ("/?code=abc&state=other", Redirect::StateMismatch),
            ("/?code=abc", Redirect::StateMismatch),
            (
                "/?error=access_denied&error_description=AADSTS65004%3A+User+declined.%0D%0ATrace+ID%3A+x&state=S1",
                Redirect::Error {
                    code: "access_denied".into(),
                    description: "AADSTS65004: User declined.".into(),
                },
            ),
            ("/favicon.ico", Redirect::Other),
            ("/", Redirect::Other),
            ("/?foo=bar", Redirect::Other),
            ("/cb?code=abc&state=S1", Redirect::Other),
        ];
        for (target, expected) in cases {
            assert_eq!(&parse_redirect(target, "S1"), expected, "{target}");
        }
    }
}
