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
    #[cfg(test)]
    pub(crate) fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// Wait this long for the browser instead of [`DEFAULT_BROWSER_TIMEOUT`].
    #[must_use]
    #[cfg(test)]
    pub(crate) fn with_timeout(mut self, timeout: Duration) -> Self {
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
    use graphsim::{AuthorizeOutcome, RequestKind, Simulator, Tree};
    use tokio::net::TcpStream;

    use super::*;

    fn settings(sim: &Simulator) -> AuthSettings {
        AuthSettings {
            login_base_url: sim.auth_url(),
            ..AuthSettings::new("client-123")
        }
    }

    /// The browser: follows nothing by itself, so each hop can be looked at.
    fn browser() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    /// Open the authorize URL at the identity host and return where it sends the browser back to.
    async fn sign_in_page(authorize_url: &str) -> url::Url {
        let answer = browser().get(authorize_url).send().await.unwrap();
        assert_eq!(answer.status(), 302);
        let location = answer.headers()["location"].to_str().unwrap();
        url::Url::parse(location).unwrap()
    }

    /// Follow `url` to the loopback listener; its status and page.
    async fn visit(url: &str) -> (u16, String) {
        let answer = browser().get(url).send().await.unwrap();
        (answer.status().as_u16(), answer.text().await.unwrap())
    }

    fn query_param(url: &str, name: &str) -> String {
        url::Url::parse(url)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap()
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

    #[tokio::test]
    async fn browser_login_redeems_the_code_with_the_pkce_verifier() {
        let sim = Simulator::start(Tree::personal());
        let login = BrowserLogin::start(&settings(&sim)).await.unwrap();
        let url = login.authorize_url().to_owned();
        assert!(url.starts_with(&format!("{}/common/oauth2/v2.0/authorize?", sim.auth_url())));
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
        assert!(!format!("{login:?}").contains(&login.verifier.0));

        let http = reqwest::Client::new();
        let finish = tokio::spawn(async move { login.finish(&http).await });
        // A speculative preconnect that never sends anything must not hold up what follows.
        let port = redirect_uri.strip_prefix("http://localhost:").unwrap();
        let _idle = TcpStream::connect(format!("127.0.0.1:{port}"))
            .await
            .unwrap();
        // The browser asks for the favicon first; that must not end the wait.
        let (status, _) = visit(&format!("{redirect_uri}/favicon.ico")).await;
        assert_eq!(status, 404);
        let back = sign_in_page(&url).await;
        assert!(back.as_str().starts_with(&redirect_uri), "{back}");
        let (status, page) = visit(back.as_str()).await;
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("you can close this window"), "{page}");

        // The identity host redeems a code only with the redirect URI it was issued for and the verifier
        // whose S256 challenge the authorize request carried.
        let tokens = finish.await.unwrap().unwrap();
        assert!(tokens.refresh_token.is_some());
        assert_eq!(tokens.scope, "Files.Read.All User.Read");
        assert_eq!(sim.requests(RequestKind::Authorize), 1);
        assert_eq!(sim.requests(RequestKind::Token), 1);
    }

    #[tokio::test]
    async fn browser_login_rejects_a_foreign_state() {
        let sim = Simulator::start(Tree::personal());
        let login = BrowserLogin::start(&settings(&sim)).await.unwrap();
        let mut back = sign_in_page(login.authorize_url()).await;
        let http = reqwest::Client::new();
        let finish = tokio::spawn(async move { login.finish(&http).await });
        let pairs: Vec<(String, String)> = back
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "state" { "forged".into() } else { v };
                (k.into_owned(), v.into_owned())
            })
            .collect();
        back.query_pairs_mut().clear().extend_pairs(pairs);
        let (status, _) = visit(back.as_str()).await;
        assert_eq!(status, 400);
        let err = finish.await.unwrap().unwrap_err();
        assert!(matches!(err, SignInError::StateMismatch), "{err:?}");
        assert_eq!(
            sim.requests(RequestKind::Token),
            0,
            "a forged code must not be redeemed"
        );
    }

    #[tokio::test]
    async fn browser_login_reports_a_cancelled_sign_in_as_declined() {
        let sim = Simulator::start(Tree::personal());
        sim.set_authorize_outcome(AuthorizeOutcome::Deny);
        let login = BrowserLogin::start(&settings(&sim)).await.unwrap();
        let back = sign_in_page(login.authorize_url()).await;
        let http = reqwest::Client::new();
        let finish = tokio::spawn(async move { login.finish(&http).await });
        let (status, _) = visit(back.as_str()).await;
        assert_eq!(status, 400);
        let err = finish.await.unwrap().unwrap_err();
        assert!(matches!(err, SignInError::Declined), "{err:?}");
        assert_eq!(sim.requests(RequestKind::Token), 0);
    }

    #[tokio::test]
    async fn browser_login_gives_up_after_its_timeout() {
        // Nothing is sent anywhere: the default sign-in host is never contacted.
        let login = BrowserLogin::start(&AuthSettings::new("client-123"))
            .await
            .unwrap()
            .with_timeout(Duration::from_millis(50));
        let err = login.finish(&reqwest::Client::new()).await.unwrap_err();
        assert!(matches!(err, SignInError::BrowserTimeout { .. }), "{err:?}");
        assert!(err.to_string().contains("did not return"), "{err}");
    }
}
