//! Where bearer tokens come from: the [`TokenSource`] seam the Graph client calls, a static source for
//! `ODBACKUP_ACCESS_TOKEN`, and (in submodules) the sign-in flows, the token store and the refreshing
//! source. Secrets are types that cannot leak through `Debug` or logs.
//!
//! This module knows nothing of drives, the manifest or the terminal: the command line prints what the
//! sign-in flows return.

pub mod refresh;
pub mod signin;
pub mod store;

use futures_util::future::BoxFuture;

/// A bearer token. Its `Debug` never shows it; [`AccessToken::expose`] is for building the header only.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    /// Wrap a token.
    pub fn new(token: String) -> Self {
        Self(token)
    }

    /// The secret itself, for the `Authorization` header.
    pub fn expose(&self) -> &str {
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
    /// The token given in `ODBACKUP_ACCESS_TOKEN` was refused by the service.
    #[error(
        "the access token from ODBACKUP_ACCESS_TOKEN was refused (expired or invalid); set a fresh one, or unset it and run `odbackup login`"
    )]
    StaticTokenRefused,
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
}

impl AuthError {
    /// Whether the service refused the sign-in for good: the user must run `odbackup login` again.
    pub fn is_refused(&self) -> bool {
        match self {
            AuthError::StaticTokenRefused | AuthError::NotSignedIn { .. } => true,
            AuthError::SignIn(e) => e.is_refused(),
            AuthError::Store(_) => false,
        }
    }
}

/// Hands out bearer tokens to the Graph client. Implementations are shared by every worker of a run.
pub trait TokenSource: Send + Sync {
    /// A token valid for a while yet.
    fn access_token(&self) -> BoxFuture<'_, Result<AccessToken, AuthError>>;

    /// Graph answered 401 to `rejected`. A refreshing source refreshes once for all concurrent callers (a
    /// caller whose token was already replaced returns at once); a static source cannot, and says so.
    fn reject(&self, rejected: &AccessToken) -> BoxFuture<'_, Result<(), AuthError>>;
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
        Box::pin(async { Err(AuthError::StaticTokenRefused) })
    }
}
