//! App registrations for the client-credentials grant (app-only sign-in): the credentials an app may present
//! (client secrets, certificates) and the application permissions consented for it (the token's `roles`).
//!
//! A certificate credential is a JWT the app signs with its private key (`client_assertion`, with
//! `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`). Its shape follows
//! <https://learn.microsoft.com/en-us/entra/identity-platform/certificate-credentials>: header `alg` `PS256`
//! (`RS256` is also accepted, as the older revision of that page asked), `typ` `JWT`, and the certificate named
//! by `x5t#S256` (base64url SHA-256 of its DER) or `x5t` (base64url SHA-1); claims `aud` = the token endpoint's
//! URL, `iss` = `sub` = the client ID, a unique `jti`, `nbf`, `exp`. The signature is checked against the
//! certificate registered for the app, as the service checks it against the one uploaded to the registration.
//! The scope must be a resource's `/.default` (AADSTS1002012 otherwise), and no refresh token is issued
//! (<https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow>).
//!
//! The AADSTS numbers of the refusals are the service's where we found them quoted; their exact wording is
//! unconfirmed, and no client should read it.

use std::collections::{HashMap, HashSet};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use serde_json::Value;
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

/// The assertion type of a certificate credential (RFC 7523).
pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// One app registration.
#[derive(Clone, Debug, Default)]
pub(crate) struct AppRegistration {
    /// Client secrets that are valid for it.
    pub secrets: Vec<String>,
    /// Certificates uploaded for it (DER).
    pub certificates: Vec<Vec<u8>>,
    /// Application permissions consented for it: the `roles` of its tokens.
    pub roles: Vec<String>,
}

/// Every registration, and the assertion IDs already redeemed.
#[derive(Default)]
pub(crate) struct Apps {
    pub registrations: HashMap<String, AppRegistration>,
    seen_jti: HashSet<String>,
}

/// Why a client-credentials request is refused: status, OAuth `error`, AADSTS number, description.
pub(crate) type Refusal = (u16, &'static str, u32, String);

impl Apps {
    /// Whether any app is registered: with none, the simulator accepts any client credentials (older tests).
    pub fn any(&self) -> bool {
        !self.registrations.is_empty()
    }

    /// Check the credential of a client-credentials request for `client_id` against its registration, and
    /// return the roles its token carries. `token_url` is the endpoint the assertion must be addressed to;
    /// `now` is Unix seconds.
    pub fn authenticate(
        &mut self,
        client_id: &str,
        form: &HashMap<String, String>,
        token_url: &str,
        now: i64,
    ) -> Result<Vec<String>, Refusal> {
        let Some(app) = self.registrations.get(client_id).cloned() else {
            return Err((
                400,
                "unauthorized_client",
                700_016,
                format!(
                    "Application with identifier '{client_id}' was not found in the directory 'graphsim'."
                ),
            ));
        };
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
        if let Some(secret) = form.get("client_secret") {
            return if app.secrets.iter().any(|s| s == secret) {
                Ok(app.roles)
            } else {
                Err((
                    401,
                    "invalid_client",
                    7_000_215,
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.".to_owned(),
                ))
            };
        }
        if get("client_assertion_type") != JWT_BEARER || get("client_assertion").is_empty() {
            return Err((
                401,
                "invalid_client",
                7_000_218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.".to_owned(),
            ));
        }
        let claims = check_assertion(&app, get("client_assertion"))?;
        let text = |k: &str| claims.get(k).and_then(Value::as_str).unwrap_or_default();
        let secs = |k: &str| claims.get(k).and_then(Value::as_i64);
        if text("aud") != token_url {
            return Err((
                401,
                "invalid_client",
                700_021,
                format!(
                    "Client assertion audience claim does not match Realm issuer (expected {token_url})."
                ),
            ));
        }
        if text("iss") != client_id || text("sub") != client_id {
            return Err((
                401,
                "invalid_client",
                700_023,
                "Client assertion issuer and subject must be the client ID.".to_owned(),
            ));
        }
        // A minute of clock skew either way, as identity services allow.
        let (Some(exp), nbf) = (secs("exp"), secs("nbf").unwrap_or(i64::MIN)) else {
            return Err((
                401,
                "invalid_client",
                700_024,
                "Client assertion contains no exp claim.".to_owned(),
            ));
        };
        if exp + 60 < now || nbf > now + 60 {
            return Err((
                401,
                "invalid_client",
                700_024,
                "Client assertion is not within its valid time range.".to_owned(),
            ));
        }
        let jti = text("jti");
        if jti.is_empty() || !self.seen_jti.insert(jti.to_owned()) {
            return Err((
                401,
                "invalid_client",
                700_025,
                "Client assertion has no jti, or one already redeemed (replay).".to_owned(),
            ));
        }
        Ok(app.roles)
    }
}

/// The DER certificates of a PEM text (its `CERTIFICATE` sections).
pub(crate) fn certificates_of(pem: &str) -> Vec<Vec<u8>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .map(|c| c.as_ref().to_vec())
        .collect()
}

fn bad_signature(why: &str) -> Refusal {
    (
        401,
        "invalid_client",
        700_027,
        format!("Client assertion failed signature validation ({why})."),
    )
}

/// Decode and verify the signed assertion against one of `app`'s certificates; its claims.
fn check_assertion(
    app: &AppRegistration,
    jwt: &str,
) -> Result<serde_json::Map<String, Value>, Refusal> {
    let mut parts = jwt.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad_signature("not a signed JWT"));
    };
    let decode = |p: &str| {
        URL_SAFE_NO_PAD
            .decode(p)
            .map_err(|_| bad_signature("bad base64url"))
    };
    let header: serde_json::Map<String, Value> =
        serde_json::from_slice(&decode(h)?).map_err(|_| bad_signature("bad header"))?;
    let claims: serde_json::Map<String, Value> =
        serde_json::from_slice(&decode(c)?).map_err(|_| bad_signature("bad claims"))?;
    let signature = decode(s)?;
    let algorithm: &dyn rustls_pki_types::SignatureVerificationAlgorithm =
        match header.get("alg").and_then(Value::as_str) {
            Some("PS256") => webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
            Some("RS256") => webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA256,
            _ => return Err(bad_signature("alg must be PS256 or RS256")),
        };
    let named = |key: &str| header.get(key).and_then(Value::as_str);
    let thumb256 = named("x5t#S256");
    let thumb1 = named("x5t");
    if thumb256.is_none() && thumb1.is_none() {
        return Err(bad_signature("no x5t#S256 or x5t names the certificate"));
    }
    let cert = app
        .certificates
        .iter()
        .find(|der| {
            thumb256.is_none_or(|t| t == URL_SAFE_NO_PAD.encode(Sha256::digest(der)))
                && thumb1.is_none_or(|t| t == URL_SAFE_NO_PAD.encode(Sha1::digest(der)))
        })
        .ok_or_else(|| bad_signature("no certificate of the app has that thumbprint"))?;
    let der = CertificateDer::from(cert.as_slice());
    let cert =
        webpki::EndEntityCert::try_from(&der).map_err(|_| bad_signature("bad certificate"))?;
    let signed = &jwt[..h.len() + 1 + c.len()];
    cert.verify_signature(algorithm, signed.as_bytes(), &signature)
        .map_err(|_| bad_signature("the signature does not verify"))?;
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{Simulator, Tree};

    /// An app-only token for `client_id` with `secret`, or the status the token endpoint answered.
    async fn app_token(sim: &Simulator, client_id: &str, secret: &str) -> Result<String, u16> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", client_id)
            .append_pair("client_secret", secret)
            .append_pair("scope", "https://graph.microsoft.com/.default")
            .finish();
        let r = reqwest::Client::new()
            .post(format!(
                "{}/contoso.example/oauth2/v2.0/token",
                sim.auth_url()
            ))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let json: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert!(
            json.get("refresh_token").is_none(),
            "no refresh token: {json}"
        );
        json["access_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or(status)
    }

    async fn drive_status(sim: &Simulator, token: &str) -> u16 {
        reqwest::Client::new()
            .get(format!("{}/drives/{}", sim.graph_url(), sim.drive_id()))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_app_spends_its_own_budget_and_a_wrong_secret_gets_no_token() {
        let sim = Simulator::start(Tree::business().file("a.txt", 10));
        sim.register_app_secret("app-a", "secret-a", &["Files.Read.All"]);
        sim.register_app_secret("app-b", "secret-b", &["Files.Read.All"]);
        assert_eq!(app_token(&sim, "app-a", "secret-b").await, Err(401));
        assert_eq!(app_token(&sim, "app-c", "secret-a").await, Err(400));
        // Two tokens of one app (two processes, two shards) and one of another app.
        let a1 = app_token(&sim, "app-a", "secret-a").await.unwrap();
        let a2 = app_token(&sim, "app-a", "secret-a").await.unwrap();
        let b = app_token(&sim, "app-b", "secret-b").await.unwrap();
        assert_ne!(a1, a2);
        // Two Graph requests (2 units each) per minute and app.
        sim.set_rate_limit(Some((4, Duration::from_secs(60))));
        assert_eq!(drive_status(&sim, &a1).await, 200);
        assert_eq!(drive_status(&sim, &a2).await, 200);
        // One budget shared by every app would be spent by now.
        assert_eq!(drive_status(&sim, &b).await, 200, "app-b has its own");
        assert_eq!(drive_status(&sim, &b).await, 200);
        assert_eq!(
            drive_status(&sim, &a1).await,
            429,
            "app-a's budget is spent, whichever of its tokens asks"
        );
    }
}
