//! The authorization code grant with PKCE (RFC 7636) and a loopback redirect: the user signs in in a
//! browser, which the identity platform sends back to a listener on this machine with a code
//! (<https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow>).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng as _;
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;

use super::loopback::{
    Listener, PAGE_FAILED, PAGE_NOT_HERE, PAGE_SIGNED_IN, Redirect, parse_redirect, respond,
};
use super::token::request_tokens;
use super::{AuthSettings, DEFAULT_BROWSER_TIMEOUT, Endpoint, Secret, SignInError, TokenResponse};

/// A started browser sign-in: a listener on a random loopback port and the authorize URL that leads back
/// to it. Print [`authorize_url`](Self::authorize_url) (and open it if you can), then call
/// [`finish`](Self::finish). `Debug` hides the PKCE verifier.
#[derive(Debug)]
pub struct BrowserLogin {
    settings: AuthSettings,
    listener: Listener,
    redirect_uri: String,
    authorize_url: String,
    state: Secret,
    verifier: Secret,
    timeout: Duration,
}

impl BrowserLogin {
    /// Listen on `127.0.0.1:0` and build the authorize URL with a fresh `state` and PKCE verifier.
    ///
    /// The redirect URI is `http://localhost:{port}`: the identity platform ignores the port when it
    /// matches loopback redirect URIs, so the app registration lists `http://localhost` once and any free
    /// port works (<https://learn.microsoft.com/en-us/entra/identity-platform/reply-url#localhost-exceptions>).
    /// `localhost` rather than `127.0.0.1` because that is the URI the portal accepts for desktop apps
    /// without editing the manifest.
    pub async fn start(settings: &AuthSettings) -> Result<Self, SignInError> {
        settings.check()?;
        let listener = Listener::bind()
            .await
            .map_err(|source| SignInError::Listener { source })?;
        let port = listener.port();
        let redirect_uri = format!("http://localhost:{port}");
        let state = random_token(16);
        let verifier = random_token(32);
        let scope = settings.scope_param();
        let authorize_url = url::Url::parse_with_params(
            &settings.endpoint_url(Endpoint::Authorize),
            &[
                ("client_id", settings.client_id.as_str()),
                ("response_type", "code"),
                ("redirect_uri", redirect_uri.as_str()),
                ("response_mode", "query"),
                ("scope", scope.as_str()),
                ("state", state.as_str()),
                ("code_challenge", code_challenge(&verifier).as_str()),
                ("code_challenge_method", "S256"),
                // Let a user with several accounts pick one instead of being signed in silently.
                ("prompt", "select_account"),
            ],
        )
        .map_err(|_| SignInError::Settings {
            problem: "the sign-in URL (`auth_url`) is not a valid URL",
        })?
        .to_string();
        Ok(Self {
            settings: settings.clone(),
            listener,
            redirect_uri,
            authorize_url,
            state: Secret(state),
            verifier: Secret(verifier),
            timeout: DEFAULT_BROWSER_TIMEOUT,
        })
    }

    /// The URL to open in a browser. Safe to print: it carries the PKCE challenge, never the verifier.
    pub fn authorize_url(&self) -> &str {
        &self.authorize_url
    }

    /// The redirect URI the service sends the browser back to, `http://localhost:{port}`.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// Wait this long for the browser instead of [`DEFAULT_BROWSER_TIMEOUT`].
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Wait for the browser's redirect, check its `state`, redeem the code (with the PKCE verifier) at the
    /// token endpoint, and tell the browser how it went.
    ///
    /// Requests for other paths (`/favicon.ico`) or without a code get a 404 and the wait goes on.
    ///
    /// # Errors
    /// [`SignInError::BrowserTimeout`], [`SignInError::StateMismatch`], [`SignInError::Declined`] (the user
    /// cancelled), [`SignInError::Redirect`], or the token endpoint's error.
    pub async fn finish(mut self, http: &reqwest::Client) -> Result<TokenResponse, SignInError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let (mut stream, target) = tokio::select! {
                () = tokio::time::sleep_until(deadline) => {
                    return Err(SignInError::BrowserTimeout { waited: self.timeout });
                }
                request = self.listener.next_request() => {
                    request.map_err(|source| SignInError::Listener { source })?
                }
            };
            let result = match parse_redirect(&target, &self.state.0) {
                Redirect::Other => {
                    respond(&mut stream, "404 Not Found", PAGE_NOT_HERE).await;
                    continue;
                }
                Redirect::StateMismatch => Err(SignInError::StateMismatch),
                Redirect::Error { code, .. } if code == "access_denied" => {
                    Err(SignInError::Declined)
                }
                Redirect::Error { code, description } => {
                    Err(SignInError::Redirect { code, description })
                }
                Redirect::Code(code) => self.redeem(http, &code).await,
            };
            let page = if result.is_ok() {
                ("200 OK", PAGE_SIGNED_IN)
            } else {
                ("400 Bad Request", PAGE_FAILED)
            };
            respond(&mut stream, page.0, page.1).await;
            return result;
        }
    }

    /// `POST /token` with `grant_type=authorization_code`; a public client sends no secret.
    async fn redeem(
        &self,
        http: &reqwest::Client,
        code: &str,
    ) -> Result<TokenResponse, SignInError> {
        let scope = self.settings.scope_param();
        let form = [
            ("grant_type", "authorization_code"),
            ("client_id", self.settings.client_id.as_str()),
            ("code", code),
            // Must be byte-for-byte the one in the authorize request.
            ("redirect_uri", self.redirect_uri.as_str()),
            ("code_verifier", self.verifier.0.as_str()),
            ("scope", scope.as_str()),
        ];
        request_tokens(http, &self.settings, &form, &[code, &self.verifier.0]).await
    }
}

/// A random URL-safe string from `bytes` random bytes (32 bytes make a 43-character PKCE verifier, the
/// length RFC 7636 §4.1 recommends).
fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill(buf.as_mut_slice());
    URL_SAFE_NO_PAD.encode(buf)
}

/// The PKCE S256 challenge: base64url without padding of SHA-256 of the verifier (RFC 7636 §4.2).
fn code_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpStream;

    use super::super::test_support::{TestServer, oauth_error, token_json};
    use super::*;

    const TOKEN_PATH: &str = "/common/oauth2/v2.0/token";

    fn settings(server: &TestServer) -> AuthSettings {
        AuthSettings {
            login_base_url: server.base_url.clone(),
            ..AuthSettings::new("client-123")
        }
    }

    #[test]
    fn pkce_challenge_matches_rfc_7636_appendix_b() {
        assert_eq!(
            code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let verifier = random_token(32);
        assert_eq!(verifier.len(), 43);
        assert!(
            verifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(verifier, random_token(32));
    }

    /// status line and body the listener answered.
    /// Play the browser: follow the authorize URL's `redirect_uri` with the given query and return the
    async fn browser_hits(redirect_uri: &str, path_and_query: &str) -> String {
        let addr = redirect_uri.strip_prefix("http://localhost:").unwrap();
        let mut stream = TcpStream::connect(format!("127.0.0.1:{addr}"))
            .await
            .unwrap();
        let request = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: localhost:{addr}\r\nUser-Agent: test\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    fn query_param(url: &str, name: &str) -> String {
        url::Url::parse(url)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap()
    }

    #[tokio::test]
    async fn browser_login_redeems_the_code_with_the_pkce_verifier() {
        let server = TestServer::start(|req| {
            if req.path == TOKEN_PATH
                && req.form.get("code").map(String::as_str) == Some("AUTH-CODE-9")
            {
                (200, token_json("AT-B", "RT-B", 3599))
            } else {
                (400, oauth_error("invalid_grant", "AADSTS70000"))
            }
        })
        .await;
        let s = settings(&server);
        let login = BrowserLogin::start(&s).await.unwrap();
        let url = login.authorize_url().to_owned();
        assert!(url.starts_with(&format!(
            "{}/common/oauth2/v2.0/authorize?",
            server.base_url
        )));
        for (k, v) in [
            ("client_id", "client-123"),
            ("response_type", "code"),
            ("response_mode", "query"),
            ("code_challenge_method", "S256"),
            ("scope", "Files.Read.All offline_access User.Read"),
        ] {
            assert_eq!(query_param(&url, k), v, "{k}");
        }
        let redirect_uri = query_param(&url, "redirect_uri");
        assert_eq!(redirect_uri, login.redirect_uri());
        assert!(redirect_uri.starts_with("http://localhost:"));
        let state = query_param(&url, "state");
        let challenge = query_param(&url, "code_challenge");
        assert!(!format!("{login:?}").contains(&login.verifier.0));

        let http = reqwest::Client::new();
        let finish = tokio::spawn(async move { login.finish(&http).await });
        // A speculative preconnect that never sends anything must not hold up what follows.
        let port = redirect_uri.strip_prefix("http://localhost:").unwrap();
        let _idle = TcpStream::connect(format!("127.0.0.1:{port}"))
            .await
            .unwrap();
        // The browser asks for the favicon first; that must not end the wait.
        let favicon = browser_hits(&redirect_uri, "/favicon.ico").await;
        assert!(favicon.starts_with("HTTP/1.1 404"), "{favicon}");
        let page = browser_hits(
            &redirect_uri,
            &format!("/?code=AUTH-CODE-9&state={state}&session_state=x"),
        )
        .await;
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert!(page.contains("you can close this window"), "{page}");

        let tokens = finish.await.unwrap().unwrap();
        assert_eq!(tokens.access_token.expose(), "AT-B");
        let redeem = server
            .requests()
            .into_iter()
            .find(|r| r.path == TOKEN_PATH)
            .unwrap();
        assert_eq!(redeem.form["grant_type"], "authorization_code");
        assert_eq!(redeem.form["redirect_uri"], redirect_uri);
        assert_eq!(redeem.form["client_id"], "client-123");
        assert!(!redeem.form.contains_key("client_secret"));
        assert_eq!(code_challenge(&redeem.form["code_verifier"]), challenge);
    }

    #[tokio::test]
    async fn browser_login_rejects_a_foreign_state() {
        let server = TestServer::start(|_| (500, String::new())).await;
        let login = BrowserLogin::start(&settings(&server)).await.unwrap();
        let redirect_uri = login.redirect_uri().to_owned();
        let http = reqwest::Client::new();
        let finish = tokio::spawn(async move { login.finish(&http).await });
        let page = browser_hits(&redirect_uri, "/?code=AUTH-CODE-9&state=forged").await;
        assert!(page.starts_with("HTTP/1.1 400"), "{page}");
        let err = finish.await.unwrap().unwrap_err();
        assert!(matches!(err, SignInError::StateMismatch), "{err:?}");
        assert_eq!(
            server.count(TOKEN_PATH),
            0,
            "a forged code must not be redeemed"
        );
    }

    #[tokio::test]
    async fn browser_login_reports_a_cancelled_sign_in_as_declined() {
        let server = TestServer::start(|_| (500, String::new())).await;
        let login = BrowserLogin::start(&settings(&server)).await.unwrap();
        let redirect_uri = login.redirect_uri().to_owned();
        let state = query_param(login.authorize_url(), "state");
        let http = reqwest::Client::new();
        let finish = tokio::spawn(async move { login.finish(&http).await });
        browser_hits(
            &redirect_uri,
            &format!("/?error=access_denied&error_description=AADSTS65004&state={state}"),
        )
        .await;
        let err = finish.await.unwrap().unwrap_err();
        assert!(matches!(err, SignInError::Declined), "{err:?}");
    }

    #[tokio::test]
    async fn browser_login_gives_up_after_its_timeout() {
        let server = TestServer::start(|_| (500, String::new())).await;
        let login = BrowserLogin::start(&settings(&server))
            .await
            .unwrap()
            .with_timeout(Duration::from_millis(50));
        let err = login.finish(&reqwest::Client::new()).await.unwrap_err();
        assert!(matches!(err, SignInError::BrowserTimeout { .. }), "{err:?}");
        assert!(err.to_string().contains("did not return"), "{err}");
    }
}
