//! App-only sign-in: the OAuth 2.0 client credentials grant, for an administrator backing up a whole
//! organisation without signing in as each user
//! (<https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow>).
//!
//! The app proves itself with a certificate (a signed client assertion, which Microsoft recommends) or a client
//! secret. No refresh token exists in this flow: `ClientCredentialsSource` asks for a new access token shortly
//! before the current one expires, or when Graph refuses it, once for all workers (single flight, as the
//! delegated refresher does). The credential file is read again for every new token, so a rotated secret or
//! certificate is picked up by a running backup, and its mode is checked each time: a key or secret that others
//! can read is refused, never used.
//!
//! What is kept between runs ([`AppCredentialRef`]) names where the credential lives (a file, or the
//! `ODBACKUP_CLIENT_SECRET` variable), never the credential itself. Secrets stay in types whose `Debug` shows
//! `***`, and are cut out of any error the service words.
//!
//! The client assertion (`client_assertion`) follows
//! <https://learn.microsoft.com/en-us/entra/identity-platform/certificate-credentials>: header `alg` `PS256`,
//! `typ` `JWT`, `x5t#S256` (base64url SHA-256 of the certificate's DER) and `x5t` (its SHA-1, which older
//! revisions of the page ask for); claims `aud` = the token endpoint, `iss` = `sub` = the client ID, a random
//! `jti`, `nbf` and `iat` now, `exp` five minutes on.
//!
//! Signing uses `aws-lc-rs` and PEM sections are read by `rustls-pki-types`: both are already part of the HTTP
//! stack (rustls' default crypto provider), so app-only sign-in adds no new code to trust.
//!
//! Knows the token endpoint and files; nothing of drives, the manifest or the terminal.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PSS_SHA256, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::future::BoxFuture;
use rand::Rng as _;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha1::Sha1;
use sha2::{Digest as _, Sha256};
use tokio::sync::Mutex;

use super::refresh::RefreshPolicy;
use super::signin::{AuthSettings, Endpoint, SignInError, TokenResponse, request_tokens};
use super::store::{StoredTokens, TokenStore};
use super::{AccessToken, AuthError, TokenSource};

/// The environment variable a client secret may come from instead of a file.
pub const SECRET_ENV: &str = "ODBACKUP_CLIENT_SECRET";

/// The assertion type of a certificate credential (RFC 7523).
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long a client assertion is valid: "keep it short - 5-10 minutes after nbf at most" (the page above).
const ASSERTION_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// The largest credential file read (a PEM with a 16384-bit key and a chain is far smaller).
const MAX_CREDENTIAL_BYTES: u64 = 1 << 20;

/// Token-endpoint errors that no retry fixes: the credential, the app or its consent is wrong.
/// `invalid_client` covers a wrong secret (AADSTS7000215) and a bad assertion (AADSTS700027);
/// `unauthorized_client` an app unknown to the tenant (AADSTS700016).
const REFUSED_CODES: [&str; 5] = [
    "invalid_client",
    "unauthorized_client",
    "invalid_grant",
    "invalid_scope",
    "invalid_request",
];

/// Where an app's credential lives; what the token file keeps (never the credential itself).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AppCredentialRef {
    /// A PEM file holding the certificate's private key and the certificate.
    Certificate {
        /// The file, as an absolute path.
        path: PathBuf,
    },
    /// A file holding the client secret (surrounding whitespace ignored).
    SecretFile {
        /// The file, as an absolute path.
        path: PathBuf,
    },
    /// The client secret is in [`SECRET_ENV`] whenever a token is needed.
    SecretEnv,
}

impl fmt::Display for AppCredentialRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppCredentialRef::Certificate { path } => {
                write!(f, "certificate {}", path.display())
            }
            AppCredentialRef::SecretFile { path } => {
                write!(f, "client secret file {}", path.display())
            }
            AppCredentialRef::SecretEnv => write!(f, "client secret in {SECRET_ENV}"),
        }
    }
}

/// Why an app's credential cannot be used. Every variant is the user's to fix (exit 2), and none quotes the
/// credential.
#[derive(Debug, thiserror::Error)]
pub enum AppCredentialError {
    /// The file cannot be read.
    #[error("cannot read the app's {what} {}: {source}", path.display())]
    Unreadable {
        /// `certificate` or `client secret file`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Others may read the file: a secret they can read is no longer the app's alone.
    #[error(
        "the app's {what} {} can be read by other users (mode {mode:04o}): run `chmod 600 {}` and try again \
         (a secret others can read must also be replaced)",
        path.display(), path.display()
    )]
    Exposed {
        /// `certificate` or `client secret file`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file's content is not what was expected.
    #[error("the app's {what} {}: {problem}", path.display())]
    Invalid {
        /// `certificate` or `client secret file`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        problem: &'static str,
    },
    /// The secret was to come from the environment, which does not hold it.
    #[error(
        "{SECRET_ENV} is not set: this sign-in reads the app's client secret from it whenever a token is \
         needed (or sign in again with --client-secret-file or --certificate)"
    )]
    NoSecretInEnv,
    /// Client credentials need one tenant: `common` and its kin name none.
    #[error(
        "app-only sign-in needs your tenant's ID or domain (--tenant contoso.onmicrosoft.com), not {tenant:?}"
    )]
    NoTenant {
        /// What was given.
        tenant: String,
    },
}

/// A client secret; `Debug` shows `***`.
#[derive(Clone)]
struct ClientSecret(String);

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(***)")
    }
}

/// A certificate's private key and thumbprints, ready to sign assertions; `Debug` hides the key.
pub(crate) struct SigningCertificate {
    key: RsaKeyPair,
    /// base64url SHA-1 of the certificate's DER.
    x5t: String,
    /// base64url SHA-256 of the certificate's DER.
    x5t_s256: String,
}

impl fmt::Debug for SigningCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningCertificate")
            .field("x5t#S256", &self.x5t_s256)
            .finish_non_exhaustive()
    }
}

impl SigningCertificate {
    /// Read a PEM holding an RSA private key (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`) and the
    /// certificate registered for the app (the first `CERTIFICATE`), and check that they belong together.
    ///
    /// # Errors
    /// [`AppCredentialError::Invalid`] naming what is missing or wrong.
    pub(crate) fn from_pem(pem: &[u8], path: &Path) -> Result<Self, AppCredentialError> {
        let invalid = |problem| AppCredentialError::Invalid {
            what: "certificate",
            path: path.to_path_buf(),
            problem,
        };
        if pem
            .windows(b"ENCRYPTED PRIVATE KEY".len())
            .any(|w| w == b"ENCRYPTED PRIVATE KEY")
        {
            return Err(invalid(
                "its private key is encrypted; export it without a passphrase (`openssl pkey -in key.pem \
                 -out plain.pem`) and keep the file mode 0600",
            ));
        }
        let key = match PrivateKeyDer::from_pem_slice(pem) {
            Ok(PrivateKeyDer::Pkcs8(der)) => RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()),
            Ok(PrivateKeyDer::Pkcs1(der)) => RsaKeyPair::from_der(der.secret_pkcs1_der()),
            Ok(_) => {
                return Err(invalid(
                    "its private key is not an RSA key (Microsoft Entra certificate credentials are RSA)",
                ));
            }
            Err(_) => {
                return Err(invalid(
                    "it holds no private key: put the key (PRIVATE KEY or RSA PRIVATE KEY) and the certificate \
                     in one PEM file",
                ));
            }
        }
        .map_err(|_| invalid("its private key is not a valid RSA key"))?;
        let cert = CertificateDer::pem_slice_iter(pem)
            .find_map(Result::ok)
            .ok_or_else(|| {
                invalid(
                    "it holds no certificate: append the certificate registered for the app (BEGIN \
                     CERTIFICATE) to the key, so its thumbprint can be sent",
                )
            })?;
        let signing = Self {
            key,
            x5t: URL_SAFE_NO_PAD.encode(Sha1::digest(cert.as_ref())),
            x5t_s256: URL_SAFE_NO_PAD.encode(Sha256::digest(cert.as_ref())),
        };
        // A key and a certificate that do not match would only be refused by the service, with a vague
        // AADSTS700027: say it here.
        let probe = b"odbackup: does this key belong to this certificate?";
        let signature = signing
            .sign(probe)
            .map_err(|()| invalid("its private key cannot sign"))?;
        let parsed = webpki::EndEntityCert::try_from(&cert)
            .map_err(|_| invalid("its certificate cannot be parsed"))?;
        parsed
            .verify_signature(
                webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
                probe,
                &signature,
            )
            .map_err(|_| {
                invalid("its private key does not belong to its certificate (or is shorter than 2048 bits)")
            })?;
        Ok(signing)
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, ()> {
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PSS_SHA256,
                &SystemRandom::new(),
                message,
                &mut signature,
            )
            .map_err(|_| ())?;
        Ok(signature)
    }
}

/// A client assertion for `client_id` at the token endpoint `audience`, signed with `cert`, valid from `now`.
pub(crate) fn client_assertion(
    cert: &SigningCertificate,
    client_id: &str,
    audience: &str,
    now: SystemTime,
) -> String {
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let header = serde_json::json!({
        "alg": "PS256",
        "typ": "JWT",
        "x5t": cert.x5t,
        "x5t#S256": cert.x5t_s256,
    });
    let mut jti = [0u8; 16];
    rand::rng().fill(&mut jti);
    let claims = serde_json::json!({
        "aud": audience,
        "iss": client_id,
        "sub": client_id,
        "jti": URL_SAFE_NO_PAD.encode(jti),
        "nbf": now,
        "iat": now,
        "exp": now + ASSERTION_LIFETIME.as_secs(),
    });
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    // Signing with a key that signed at load time only fails if the library itself does.
    let signature = cert.sign(signed.as_bytes()).unwrap_or_default();
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Read a credential file: only if others cannot read it, and at most [`MAX_CREDENTIAL_BYTES`].
fn read_private(path: &Path, what: &'static str) -> Result<Vec<u8>, AppCredentialError> {
    let unreadable = |source| AppCredentialError::Unreadable {
        what,
        path: path.to_path_buf(),
        source,
    };
    // Followed if it is a link: a Kubernetes secret volume mounts each key as one.
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let meta = file.metadata().map_err(unreadable)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(AppCredentialError::Exposed {
                what,
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    if !meta.is_file() || meta.len() > MAX_CREDENTIAL_BYTES {
        return Err(AppCredentialError::Invalid {
            what,
            path: path.to_path_buf(),
            problem: "it is not a small regular file",
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::io::Read::read_to_end(
        &mut std::io::Read::take(file, MAX_CREDENTIAL_BYTES),
        &mut bytes,
    )
    .map_err(unreadable)?;
    Ok(bytes)
}

/// A credential, loaded.
#[derive(Debug)]
enum Credential {
    Secret(ClientSecret),
    Certificate(SigningCertificate),
}

impl AppCredentialRef {
    /// Load the credential now (for each new token: a rotated file is picked up).
    fn load(&self) -> Result<Credential, AppCredentialError> {
        match self {
            AppCredentialRef::Certificate { path } => {
                let pem = read_private(path, "certificate")?;
                SigningCertificate::from_pem(&pem, path).map(Credential::Certificate)
            }
            AppCredentialRef::SecretFile { path } => {
                let bytes = read_private(path, "client secret file")?;
                let text = String::from_utf8(bytes).ok();
                match text.as_deref().map(str::trim) {
                    Some(secret) if !secret.is_empty() && !secret.contains(['\n', '\r']) => {
                        Ok(Credential::Secret(ClientSecret(secret.to_owned())))
                    }
                    _ => Err(AppCredentialError::Invalid {
                        what: "client secret file",
                        path: path.clone(),
                        problem: "it must hold the secret's value on one line (UTF-8)",
                    }),
                }
            }
            AppCredentialRef::SecretEnv => match std::env::var(SECRET_ENV) {
                Ok(secret) if !secret.trim().is_empty() => {
                    Ok(Credential::Secret(ClientSecret(secret.trim().to_owned())))
                }
                _ => Err(AppCredentialError::NoSecretInEnv),
            },
        }
    }

    /// Check the credential can be used (the file is private and well formed), without asking the service.
    ///
    /// # Errors
    /// As loading it for a token would.
    pub(crate) fn check(&self) -> Result<(), AppCredentialError> {
        self.load().map(|_| ())
    }
}

/// The `/.default` scope of the Graph resource at `graph_base_url`: its origin
/// (`https://graph.microsoft.com/v1.0` → `https://graph.microsoft.com/.default`), so national clouds
/// (`graph.microsoft.us`, `microsoftgraph.chinacloudapi.cn`) get their own resource.
pub(crate) fn default_scope(graph_base_url: &str) -> Option<String> {
    let url = url::Url::parse(graph_base_url).ok()?;
    let origin = url.origin();
    origin
        .is_tuple()
        .then(|| format!("{}/.default", origin.ascii_serialization()))
}

/// Whether `tenant` names one tenant (an ID or a domain), as client credentials require.
///
/// # Errors
/// [`AppCredentialError::NoTenant`] for `common`, `organizations`, `consumers` or nothing.
pub(crate) fn check_tenant(tenant: &str) -> Result<(), AppCredentialError> {
    let t = tenant.trim();
    if t.is_empty()
        || ["common", "organizations", "consumers"]
            .iter()
            .any(|n| t.eq_ignore_ascii_case(n))
    {
        return Err(AppCredentialError::NoTenant {
            tenant: tenant.to_owned(),
        });
    }
    Ok(())
}

/// Ask the token endpoint for an app-only token with `credential` (with retries on transient failures).
///
/// # Errors
/// [`AuthError::AppCredential`] when the credential cannot be loaded; [`SignInError::Refused`] when the service
/// refuses the app or its credential; other sign-in errors as they came.
pub(crate) async fn acquire(
    http: &reqwest::Client,
    settings: &AuthSettings,
    credential: &AppCredentialRef,
    policy: RefreshPolicy,
) -> Result<TokenResponse, AuthError> {
    settings.check()?;
    check_tenant(&settings.tenant)?;
    let scope = settings.scope_param();
    let mut attempt = 0;
    loop {
        let loaded = credential.load()?;
        let assertion;
        let (secret, mut form) = match &loaded {
            Credential::Secret(secret) => {
                (secret.0.clone(), vec![("client_secret", secret.0.as_str())])
            }
            Credential::Certificate(cert) => {
                assertion = client_assertion(
                    cert,
                    &settings.client_id,
                    &settings.endpoint_url(Endpoint::Token),
                    SystemTime::now(),
                );
                (
                    assertion.clone(),
                    vec![
                        ("client_assertion_type", JWT_BEARER),
                        ("client_assertion", assertion.as_str()),
                    ],
                )
            }
        };
        form.extend([
            ("grant_type", "client_credentials"),
            ("client_id", settings.client_id.as_str()),
            ("scope", scope.as_str()),
        ]);
        match request_tokens(http, settings, &form, &[secret.as_str()]).await {
            Ok(tokens) => return Ok(tokens),
            Err(err) if err.is_transient() && attempt + 1 < policy.attempts => {
                let pause = policy
                    .backoff
                    .saturating_mul(1 << attempt.min(5))
                    .min(Duration::from_secs(30));
                tracing::debug!(error = %err, ?pause, "app-only token request failed; retrying");
                tokio::time::sleep(pause).await;
                attempt += 1;
            }
            Err(err) => return Err(AuthError::SignIn(refused_or(err))),
        }
    }
}

/// A refusal only a fixed credential or consent helps becomes [`SignInError::Refused`].
fn refused_or(err: SignInError) -> SignInError {
    match err {
        SignInError::Service {
            code, description, ..
        } if REFUSED_CODES.contains(&code.as_str()) => SignInError::Refused { code, description },
        other => other,
    }
}

/// A [`TokenSource`] for an app: a new token shortly before the current one expires or when Graph refuses it,
/// one request however many workers ask; share one per process (`Arc`).
pub(crate) struct ClientCredentialsSource {
    http: reqwest::Client,
    settings: AuthSettings,
    credential: AppCredentialRef,
    policy: RefreshPolicy,
    /// Where the current token is kept for the next command (the account's token file), if anywhere.
    store: Option<(TokenStore, String)>,
    state: Mutex<AppState>,
    acquired: AtomicU64,
}

struct AppState {
    token: Option<AccessToken>,
    expires_at: SystemTime,
    lifetime: Option<Duration>,
    /// Kept to be written back with each new token.
    stored: Option<StoredTokens>,
    /// Set once the service refused the app: every later call fails at once.
    refused: Option<(String, String)>,
}

impl fmt::Debug for ClientCredentialsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentialsSource")
            .field("client_id", &self.settings.client_id)
            .field("credential", &self.credential)
            .field("acquired", &self.acquired_count())
            .finish_non_exhaustive()
    }
}

impl ClientCredentialsSource {
    /// A source for the app `settings.client_id` proving itself with `credential`; `stored` (the account's
    /// token file, with its current token) is kept up to date in `store` when given.
    pub fn new(
        http: reqwest::Client,
        settings: AuthSettings,
        credential: AppCredentialRef,
        store: Option<(TokenStore, String)>,
        stored: Option<StoredTokens>,
    ) -> Self {
        let (token, expires_at, lifetime) = stored.as_ref().map_or((None, UNIX_EPOCH, None), |s| {
            (s.access_token.clone(), s.expires_at_time(), s.lifetime())
        });
        Self {
            http,
            settings,
            credential,
            policy: RefreshPolicy::default(),
            store,
            state: Mutex::new(AppState {
                token,
                expires_at,
                lifetime,
                stored,
                refused: None,
            }),
            acquired: AtomicU64::new(0),
        }
    }

    /// Tokens requested from the service so far.
    pub(crate) fn acquired_count(&self) -> u64 {
        self.acquired.load(Ordering::Relaxed)
    }

    async fn token(&self) -> Result<AccessToken, AuthError> {
        let mut state = self.state.lock().await;
        check_refused(&state)?;
        let margin = state
            .lifetime
            .map_or(self.policy.margin, |l| self.policy.margin.min(l / 4));
        let due = state.expires_at.checked_sub(margin).unwrap_or(UNIX_EPOCH);
        if let Some(token) = &state.token
            && SystemTime::now() < due
        {
            return Ok(token.clone());
        }
        self.renew(&mut state).await?;
        Ok(state.token.clone().expect("a renewal stores a token"))
    }

    async fn renew_rejected(&self, rejected: &str) -> Result<(), AuthError> {
        let mut state = self.state.lock().await;
        check_refused(&state)?;
        if state.token.as_ref().map(AccessToken::expose) != Some(rejected) {
            // Another worker got a new one while this one waited.
            return Ok(());
        }
        self.renew(&mut state).await
    }

    /// Ask for a new token; called with the lock held, which makes it single flight.
    async fn renew(&self, state: &mut AppState) -> Result<(), AuthError> {
        let tokens = match acquire(&self.http, &self.settings, &self.credential, self.policy).await
        {
            Ok(tokens) => tokens,
            Err(AuthError::SignIn(SignInError::Refused { code, description })) => {
                state.refused = Some((code.clone(), description.clone()));
                return Err(AuthError::SignIn(SignInError::Refused {
                    code,
                    description,
                }));
            }
            Err(err) => return Err(err),
        };
        let now = SystemTime::now();
        state.expires_at = now + tokens.expires_in;
        state.lifetime = Some(tokens.expires_in);
        self.acquired.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(client_id = %self.settings.client_id, "app-only access token acquired");
        if let (Some((store, account)), Some(stored)) = (&self.store, state.stored.as_mut()) {
            stored.apply(
                TokenResponse {
                    access_token: tokens.access_token.clone(),
                    refresh_token: None,
                    expires_in: tokens.expires_in,
                    scope: String::new(),
                },
                now,
            );
            let (store, account, copy) = (store.clone(), account.clone(), stored.clone());
            // Diagnostics, not notices: the token source sits below the run's reporter (graph, which calls it,
            // knows nothing of progress), and nothing is lost: the next run asks for a token of its own.
            match tokio::task::spawn_blocking(move || store.save(&account, &copy)).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::warn!(error = %err, "could not keep the app's new token"),
                Err(err) => tracing::warn!(error = %err, "keeping the app's new token failed"),
            }
        }
        state.token = Some(tokens.access_token);
        Ok(())
    }
}

fn check_refused(state: &AppState) -> Result<(), AuthError> {
    match &state.refused {
        Some((code, description)) => Err(AuthError::SignIn(SignInError::Refused {
            code: code.clone(),
            description: description.clone(),
        })),
        None => Ok(()),
    }
}

impl TokenSource for ClientCredentialsSource {
    fn access_token(&self) -> BoxFuture<'_, Result<AccessToken, AuthError>> {
        Box::pin(self.token())
    }

    fn reject(&self, rejected: &AccessToken) -> BoxFuture<'_, Result<(), AuthError>> {
        let rejected = rejected.expose().to_owned();
        Box::pin(async move { self.renew_rejected(&rejected).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &[u8] = include_bytes!("../../tests/it/fixtures/app-cert.pem");
    const OTHER: &[u8] = include_bytes!("../../tests/it/fixtures/other-cert.pem");

    fn split(pem: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let text = std::str::from_utf8(pem).unwrap();
        let at = text.find("-----BEGIN CERTIFICATE-----").unwrap();
        (
            text.as_bytes()[..at].to_vec(),
            text.as_bytes()[at..].to_vec(),
        )
    }

    #[test]
    fn an_assertion_has_the_documented_header_and_claims_and_verifies_with_the_certificate() {
        let cert = SigningCertificate::from_pem(PEM, Path::new("app.pem")).unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let aud = "https://login.microsoftonline.com/contoso.example/oauth2/v2.0/token";
        let jwt = client_assertion(&cert, "client-1", aud, now);
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(header["alg"], "PS256");
        assert_eq!(header["typ"], "JWT");
        let (_, cert_pem) = split(PEM);
        let der = CertificateDer::from_pem_slice(&cert_pem).unwrap();
        assert_eq!(
            header["x5t#S256"],
            URL_SAFE_NO_PAD.encode(Sha256::digest(der.as_ref()))
        );
        assert_eq!(
            header["x5t"],
            URL_SAFE_NO_PAD.encode(Sha1::digest(der.as_ref()))
        );
        assert_eq!(claims["aud"], aud);
        assert_eq!(claims["iss"], "client-1");
        assert_eq!(claims["sub"], "client-1");
        assert_eq!(claims["nbf"], 1_700_000_000);
        assert_eq!(claims["exp"], 1_700_000_300);
        assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));
        let again = client_assertion(&cert, "client-1", aud, now);
        assert_ne!(jwt, again, "every assertion has its own jti");
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        webpki::EndEntityCert::try_from(&der)
            .unwrap()
            .verify_signature(
                webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
                format!("{}.{}", parts[0], parts[1]).as_bytes(),
                &signature,
            )
            .expect("the signature verifies with the certificate");
    }

    #[test]
    fn a_pem_without_its_certificate_or_with_another_ones_is_refused_saying_why() {
        let (key, _) = split(PEM);
        let (_, other_cert) = split(OTHER);
        let err = SigningCertificate::from_pem(&key, Path::new("k.pem")).unwrap_err();
        assert!(err.to_string().contains("holds no certificate"), "{err}");
        let (_, cert) = split(PEM);
        let err = SigningCertificate::from_pem(&cert, Path::new("c.pem")).unwrap_err();
        assert!(err.to_string().contains("holds no private key"), "{err}");
        let mixed = [key.as_slice(), other_cert.as_slice()].concat();
        let err = SigningCertificate::from_pem(&mixed, Path::new("m.pem")).unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
        let encrypted =
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let err = SigningCertificate::from_pem(encrypted, Path::new("e.pem")).unwrap_err();
        assert!(err.to_string().contains("encrypted"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_credential_file_others_can_read_is_refused_and_a_private_one_is_read() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cr3t-value\n").unwrap();
        for mode in [0o644, 0o640, 0o604] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = AppCredentialRef::SecretFile { path: path.clone() }
                .check()
                .unwrap_err();
            assert!(
                matches!(err, AppCredentialError::Exposed { .. }),
                "{mode:o}"
            );
            let text = err.to_string();
            assert!(
                text.contains("chmod 600") && !text.contains("s3cr3t"),
                "{text}"
            );
        }
        for mode in [0o600, 0o400] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let secret = AppCredentialRef::SecretFile { path: path.clone() };
            match secret.load().unwrap() {
                Credential::Secret(secret) => assert_eq!(secret.0, "s3cr3t-value"),
                Credential::Certificate(_) => unreachable!(),
            }
        }
    }

    #[test]
    fn the_default_scope_is_the_graph_origin_of_each_cloud_and_tenants_must_be_named() {
        assert_eq!(
            default_scope("https://graph.microsoft.com/v1.0").as_deref(),
            Some("https://graph.microsoft.com/.default")
        );
        assert_eq!(
            default_scope("https://microsoftgraph.chinacloudapi.cn/v1.0/").as_deref(),
            Some("https://microsoftgraph.chinacloudapi.cn/.default")
        );
        assert_eq!(
            default_scope("http://127.0.0.1:8080/v1.0").as_deref(),
            Some("http://127.0.0.1:8080/.default")
        );
        for bad in ["common", "Organizations", "consumers", " "] {
            assert!(check_tenant(bad).is_err(), "{bad}");
        }
        check_tenant("contoso.onmicrosoft.com").unwrap();
        let secret = ClientSecret("abc".into());
        assert_eq!(format!("{secret:?}"), "ClientSecret(***)");
    }
}
