//! Where bearer tokens come from: the [`TokenSource`] seam the Graph client calls, a static source for
//! `ODBACKUP_ACCESS_TOKEN`, and (in submodules) the sign-in flows, the token store and the refreshing
//! source. Secrets are types that cannot leak through `Debug` or logs.
//!
//! This module knows nothing of drives, the manifest or the terminal: the command line prints what the
//! sign-in flows return.

pub mod app;
pub(crate) mod refresh;
pub mod signin;
pub mod store;
pub(crate) mod write;

use futures_util::future::BoxFuture;

/// A bearer token. Its `Debug` never shows it, it has no `Display` or `Serialize`, and
/// `AccessToken::expose` is for building the `Authorization` header only.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    /// Wrap a token.
    pub fn new(token: String) -> Self {
        Self(token)
    }

    /// The secret itself, for the `Authorization` header.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(***)")
    }
}

/// Why no usable token could be had.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Graph refused the token, and the source cannot get another (a static token).
    #[error(
        "the access token was refused ({reason}); set a fresh ODBACKUP_ACCESS_TOKEN, or unset it and run `odbackup login`"
    )]
    Rejected {
        /// Why, in the user's words (which token, and why it cannot be renewed).
        reason: String,
    },
    /// Graph kept answering 401 to a token renewed for the purpose: the sign-in itself is no longer accepted
    /// (revoked sessions, a changed password, a policy), though the token service still issues tokens.
    #[error(
        "Graph kept refusing the sign-in although it was just renewed ({reason}); run `odbackup login`, then \
         re-run the same command"
    )]
    StillRefused {
        /// The last refusal, as Graph worded it (status and code).
        reason: String,
    },
    /// No sign-in is stored for this account.
    #[error("not signed in (account {account:?}); run `odbackup login`")]
    NotSignedIn {
        /// The account name.
        account: String,
    },
    /// A sign-in flow or a refresh failed.
    #[error(transparent)]
    SignIn(#[from] signin::SignInError),
    /// The token store failed.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// An app's credential (certificate, client secret) cannot be used as it is.
    #[error(transparent)]
    AppCredential(#[from] app::AppCredentialError),
}

impl AuthError {
    /// Whether the service refused the sign-in for good: the user must sign in again (or set a new token).
    #[cfg(test)]
    pub(crate) fn is_refused(&self) -> bool {
        match self {
            AuthError::Rejected { .. }
            | AuthError::StillRefused { .. }
            | AuthError::NotSignedIn { .. } => true,
            AuthError::SignIn(e) => e.is_refused(),
            AuthError::Store(_) | AuthError::AppCredential(_) => false,
        }
    }
}

/// Hands out bearer tokens to the Graph client. Implementations are shared by every worker of a run, and the
/// trait is dyn-compatible (`Arc<dyn TokenSource>`), hence the boxed futures.
pub trait TokenSource: Send + Sync {
    /// A token valid for a while yet.
    fn access_token(&self) -> BoxFuture<'_, Result<AccessToken, AuthError>>;

    /// Graph answered 401 to `rejected`. A refreshing source refreshes once for all concurrent callers (a
    /// caller whose token was already replaced returns at once); a static source cannot, and says so.
    fn reject(&self, rejected: &AccessToken) -> BoxFuture<'_, Result<(), AuthError>>;

    /// Whether [`TokenSource::reject`] can get a new token. One that cannot (a static token) is retried as it
    /// is when Graph refuses it: Graph sometimes answers 401 to a valid token, and only persistence tells.
    fn renewable(&self) -> bool {
        true
    }
}

/// A fixed token (`ODBACKUP_ACCESS_TOKEN`): used as is, never refreshed.
#[derive(Debug)]
pub struct StaticTokenSource {
    token: AccessToken,
}

impl StaticTokenSource {
    /// Use `token` for every request.
    pub fn new(token: String) -> Self {
        Self {
            token: AccessToken::new(token),
        }
    }
}

impl TokenSource for StaticTokenSource {
    fn access_token(&self) -> BoxFuture<'_, Result<AccessToken, AuthError>> {
        let token = self.token.clone();
        Box::pin(async move { Ok(token) })
    }

    fn reject(&self, _rejected: &AccessToken) -> BoxFuture<'_, Result<(), AuthError>> {
        Box::pin(async {
            Err(AuthError::Rejected {
                reason: "Graph kept answering 401 to the token from ODBACKUP_ACCESS_TOKEN, which is used as is \
                         and cannot be refreshed"
                    .to_owned(),
            })
        })
    }

    fn renewable(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_token_never_shows_in_debug() {
        let token = AccessToken::new("eyJ0eXAiOiJKV1QiLCJhbGciOi.secret".to_owned());
        assert_eq!(format!("{token:?}"), "AccessToken(***)");
        assert_eq!(format!("{:?}", Some(&token)), "Some(AccessToken(***))");
        assert_eq!(token.expose(), "eyJ0eXAiOiJKV1QiLCJhbGciOi.secret");
        let source = StaticTokenSource::new("s3cret".to_owned());
        assert!(!format!("{source:?}").contains("s3cret"));
    }

    #[tokio::test]
    async fn a_static_source_hands_out_its_token_and_cannot_refresh_it() {
        let source: Arc<dyn TokenSource> = Arc::new(StaticTokenSource::new("t".to_owned()));
        let token = source.access_token().await.unwrap();
        assert_eq!(token.expose(), "t");
        let err = source.reject(&token).await.unwrap_err();
        assert!(matches!(err, AuthError::Rejected { .. }) && err.is_refused());
        let text = err.to_string();
        assert!(
            text.starts_with("the access token was refused (")
                && text.contains("ODBACKUP_ACCESS_TOKEN")
                && text.ends_with("run `odbackup login`"),
            "{text}"
        );
        // Still the same token afterwards: nothing to refresh.
        assert_eq!(source.access_token().await.unwrap(), token);
    }
}
