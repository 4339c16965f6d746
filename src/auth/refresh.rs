//! A [`TokenSource`] that keeps a stored sign-in alive for a run of any length: it renews the access token
//! shortly before it expires and when Graph rejects it (401), stores the rotated refresh token at once, and
//! does so **once** however many workers ask at the same moment (single flight).
//!
//! Single flight comes from one `tokio::sync::Mutex` around the token state, held across the refresh:
//! callers queue on it, and each one, once it holds the lock, first compares before refreshing. A caller
//! that finds a token other than the one it was rejected with, or one that is no longer due, returns it
//! without calling the service.
//!
//! This module knows the token endpoint (through `signin`) and the token files (through `store`) only. It
//! never prints: a renewed sign-in that could not be saved is a `tracing` warning, and a refused refresh is
//! an error whose message tells the user to run `odbackup login`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use tokio::sync::Mutex;

use super::signin::{AuthSettings, SignInError, request_tokens};
use super::store::{StoredTokens, TokenStore};
use super::{AccessToken, AuthError, TokenSource};

/// Renew the access token this long before it expires (it lasts about an hour), so a request never
/// leaves with a token that dies on the way.
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// Refresh attempts on network failures, 5xx and `temporarily_unavailable` before giving up.
pub const DEFAULT_REFRESH_ATTEMPTS: u32 = 4;
/// The first pause between refresh attempts; it doubles each time (1 s, 2 s, 4 s).
pub const DEFAULT_REFRESH_BACKOFF: Duration = Duration::from_secs(1);
/// The longest pause between refresh attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// After an early refresh failed on a network problem, keep using the still-valid token this long before
/// trying again, rather than stalling every request on a retry loop.
const EARLY_REFRESH_COOLDOWN: Duration = Duration::from_secs(30);

/// OAuth errors on a refresh that only a new interactive sign-in can fix: `invalid_grant` covers an
/// expired (AADSTS700082, 90 days idle) or revoked refresh token and a changed password.
const REFUSED_CODES: [&str; 4] = [
    "invalid_grant",
    "interaction_required",
    "consent_required",
    "login_required",
];

/// When and how hard to refresh. `Default` is right for the real service; tests shorten the pauses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// Refresh this long before expiry, but never before three quarters of the token's lifetime has
    /// passed (a simulator's few-second token would otherwise be refreshed on every request).
    pub(crate) margin: Duration,
    /// Attempts per refresh when the failures are transient.
    pub attempts: u32,
    /// The first pause between attempts; doubled each time, at most 30 s.
    pub(crate) backoff: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            margin: DEFAULT_REFRESH_MARGIN,
            attempts: DEFAULT_REFRESH_ATTEMPTS,
            backoff: DEFAULT_REFRESH_BACKOFF,
        }
    }
}

/// A token source backed by a stored sign-in, renewing it as needed; share one per run (`Arc`).
pub struct RefreshingTokenSource {
    http: reqwest::Client,
    settings: AuthSettings,
    store: TokenStore,
    account: String,
    policy: RefreshPolicy,
    state: Mutex<State>,
    refreshes: AtomicU64,
}

/// What the lock guards.
struct State {
    tokens: StoredTokens,
    /// Exact expiry of the access token (the file keeps whole seconds).
    expires_at: SystemTime,
    /// How long the access token was valid when issued, if known.
    lifetime: Option<Duration>,
    /// Don't retry an early refresh before this (set after a transient failure while still valid).
    next_attempt: Option<SystemTime>,
    /// Set once the service refused the refresh token: every later call fails at once.
    refused: Option<(String, String)>,
}

impl std::fmt::Debug for RefreshingTokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshingTokenSource")
            .field("account", &self.account)
            .field("refreshes", &self.refresh_count())
            .finish_non_exhaustive()
    }
}

impl RefreshingTokenSource {
    /// A source for `account`, starting from `tokens` as loaded from `store`. `settings` are what the
    /// refresh requests use; normally [`StoredTokens::settings`], since a refresh token only works with
    /// the client ID (and cloud) it was issued to.
    pub fn new(
        http: reqwest::Client,
        settings: AuthSettings,
        store: TokenStore,
        account: impl Into<String>,
        tokens: StoredTokens,
    ) -> Self {
        let state = State {
            expires_at: tokens.expires_at_time(),
            lifetime: tokens.lifetime(),
            tokens,
            next_attempt: None,
            refused: None,
        };
        Self {
            http,
            settings,
            store,
            account: account.into(),
            policy: RefreshPolicy::default(),
            state: Mutex::new(state),
            refreshes: AtomicU64::new(0),
        }
    }

    /// Use `policy` instead of [`RefreshPolicy::default`] (the tests' short backoff).
    #[cfg(test)]
    #[must_use]
    pub(crate) fn with_policy(mut self, policy: RefreshPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// How many refreshes have succeeded so far (tests check that concurrent callers cause one).
    pub fn refresh_count(&self) -> u64 {
        self.refreshes.load(Ordering::Relaxed)
    }

    /// The current access token, refreshed first when it is due.
    async fn token(&self) -> Result<AccessToken, SignInError> {
        let mut state = self.state.lock().await;
        check_refused(&state)?;
        let now = SystemTime::now();
        let due = refresh_due_at(state.expires_at, state.lifetime, self.policy.margin);
        let valid = now < state.expires_at;
        let cooling = state.next_attempt.is_some_and(|t| now < t);
        if let Some(token) = &state.tokens.access_token
            && (now < due || (valid && cooling))
        {
            return Ok(token.clone());
        }
        match self.refresh(&mut state).await {
            Ok(()) => {}
            // Renewing early failed on a network problem, but the token still works: use it, and try
            // again a little later instead of on every request.
            Err(err) if err.is_transient() && valid && state.tokens.access_token.is_some() => {
                // A diagnostic, not a notice: the run goes on with a token that works, and the token source
                // sits below the run's reporter (graph, which calls it, knows nothing of progress).
                tracing::warn!(account = %self.account, error = %err, "could not renew the access token early; using the current one");
                state.next_attempt = Some(now + EARLY_REFRESH_COOLDOWN);
            }
            Err(err) => return Err(err),
        }
        Ok(state
            .tokens
            .access_token
            .clone()
            .expect("a successful refresh stores an access token"))
    }

    /// Refresh because Graph answered 401 to `rejected`, unless someone already replaced it.
    async fn renew_rejected(&self, rejected: &str) -> Result<(), SignInError> {
        let mut state = self.state.lock().await;
        check_refused(&state)?;
        let current = state.tokens.access_token.as_ref().map(AccessToken::expose);
        if current != Some(rejected) {
            // Another worker refreshed while this one waited for the lock: retry with the new token.
            return Ok(());
        }
        self.refresh(&mut state).await
    }

    /// Redeem the refresh token (with retries on transient failures), take in the answer and store it.
    /// Called with the lock held, which is what makes it single flight.
    async fn refresh(&self, state: &mut State) -> Result<(), SignInError> {
        let Some(refresh_token) = state.tokens.refresh_token.clone() else {
            return Err(SignInError::NoRefreshToken);
        };
        let scope = self.settings.scope_param();
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", self.settings.client_id.as_str()),
            ("refresh_token", refresh_token.expose()),
            ("scope", scope.as_str()),
        ];
        let mut attempt = 0;
        let tokens = loop {
            match request_tokens(&self.http, &self.settings, &form, &[refresh_token.expose()]).await
            {
                Ok(tokens) => break tokens,
                Err(err) if err.is_transient() && attempt + 1 < self.policy.attempts => {
                    let pause = backoff_delay(attempt, self.policy.backoff);
                    tracing::debug!(account = %self.account, error = %err, ?pause, "token refresh failed; retrying");
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
                Err(err) => {
                    let err = refused_or(err);
                    if let SignInError::Refused { code, description } = &err {
                        state.refused = Some((code.clone(), description.clone()));
                    }
                    return Err(err);
                }
            }
        };
        let now = SystemTime::now();
        state.expires_at = now + tokens.expires_in;
        state.lifetime = Some(tokens.expires_in);
        state.next_attempt = None;
        state.tokens.apply(tokens, now);
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(account = %self.account, "access token renewed");

        // Store the rotated refresh token before anything else can go wrong. If that fails the run goes
        // on: the new tokens are in memory, and the old refresh token on disk is not revoked by the
        // rotation, so the next `odbackup` still signs in.
        let (store, account, tokens) = (
            self.store.clone(),
            self.account.clone(),
            state.tokens.clone(),
        );
        // Diagnostics, not notices, for that reason, and because the token source sits below the run's
        // reporter (graph, which calls it, knows nothing of progress).
        match tokio::task::spawn_blocking(move || store.save(&account, &tokens)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::warn!(account = %self.account, error = %err, "could not save the renewed sign-in");
            }
            Err(err) => {
                tracing::warn!(account = %self.account, error = %err, "saving the renewed sign-in failed");
            }
        }
        Ok(())
    }
}

impl TokenSource for RefreshingTokenSource {
    fn access_token(&self) -> BoxFuture<'_, Result<AccessToken, AuthError>> {
        Box::pin(async move { self.token().await.map_err(AuthError::from) })
    }

    fn reject(&self, rejected: &AccessToken) -> BoxFuture<'_, Result<(), AuthError>> {
        let rejected = rejected.expose().to_owned();
        Box::pin(async move {
            self.renew_rejected(&rejected)
                .await
                .map_err(AuthError::from)
        })
    }
}

/// Fail at once if the service has already refused this sign-in during the run.
fn check_refused(state: &State) -> Result<(), SignInError> {
    match &state.refused {
        Some((code, description)) => Err(SignInError::Refused {
            code: code.clone(),
            description: description.clone(),
        }),
        None => Ok(()),
    }
}

/// A refresh failure that means "sign in again" becomes [`SignInError::Refused`]; others pass through.
fn refused_or(err: SignInError) -> SignInError {
    match err {
        SignInError::Service {
            code, description, ..
        } if REFUSED_CODES.contains(&code.as_str()) => SignInError::Refused { code, description },
        other => other,
    }
}

/// When a token expiring at `expires_at` is due for renewal: `margin` before expiry, but not before three
/// quarters of its `lifetime` have passed.
fn refresh_due_at(
    expires_at: SystemTime,
    lifetime: Option<Duration>,
    margin: Duration,
) -> SystemTime {
    let margin = lifetime.map_or(margin, |l| margin.min(l / 4));
    expires_at.checked_sub(margin).unwrap_or(expires_at)
}

/// The pause before attempt `attempt + 1`: `base` doubled per earlier attempt, at most [`MAX_BACKOFF`].
fn backoff_delay(attempt: u32, base: Duration) -> Duration {
    base.saturating_mul(1u32 << attempt.min(16))
        .min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::UNIX_EPOCH;

    use graphsim::{Failure, RequestKind, Simulator, Tree};

    use super::super::signin::{RefreshToken, TokenResponse};
    use super::*;

    /// The identity host, answering each request after `latency`.
    fn identity_host(latency: Duration) -> Simulator {
        let sim = Simulator::start(Tree::personal());
        sim.set_latency(latency);
        sim
    }

    /// Tokens as stored after a sign-in at `sim`; `expires_in_secs` from now (negative: already expired).
    fn stored(sim: &Simulator, access: &str, expires_in_secs: i64) -> StoredTokens {
        let mut settings = AuthSettings::new("client-1");
        settings.login_base_url = sim.auth_url();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        StoredTokens {
            refresh_token: Some(RefreshToken::new(sim.issue_refresh_token())),
            access_token: Some(AccessToken::new(access.into())),
            expires_at: now + expires_in_secs,
            issued_at: now + expires_in_secs - 3600,
            ..StoredTokens::from_response(
                &settings,
                TokenResponse {
                    access_token: AccessToken::new(String::new()),
                    refresh_token: None,
                    expires_in: Duration::ZERO,
                    scope: String::new(),
                },
                SystemTime::now(),
            )
        }
    }

    fn fast() -> RefreshPolicy {
        RefreshPolicy {
            backoff: Duration::from_millis(5),
            ..RefreshPolicy::default()
        }
    }

    fn source(store: &TokenStore, tokens: StoredTokens) -> RefreshingTokenSource {
        RefreshingTokenSource::new(
            reqwest::Client::new(),
            tokens.settings(),
            store.clone(),
            "default",
            tokens,
        )
        .with_policy(fast())
    }

    fn temp_store() -> (tempfile::TempDir, TokenStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::open(Some(dir.path())).unwrap();
        (dir, store)
    }

    #[test]
    fn refresh_is_due_a_margin_before_expiry_or_at_three_quarters_of_a_short_life() {
        let exp = UNIX_EPOCH + Duration::from_secs(10_000);
        let five_min = Duration::from_secs(300);
        let cases = [
            (None, 9_700),
            (Some(Duration::from_secs(3599)), 9_700),
            (Some(Duration::from_secs(4)), 9_999),
            (Some(Duration::from_secs(400)), 9_900),
        ];
        for (lifetime, due) in cases {
            assert_eq!(
                refresh_due_at(exp, lifetime, five_min),
                UNIX_EPOCH + Duration::from_secs(due),
                "{lifetime:?}"
            );
        }
    }

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        let s = Duration::from_secs;
        let delays: Vec<_> = (0..7).map(|a| backoff_delay(a, s(1))).collect();
        assert_eq!(delays, [s(1), s(2), s(4), s(8), s(16), s(30), s(30)]);
        assert_eq!(backoff_delay(u32::MAX, s(1)), s(30));
    }

    #[tokio::test]
    async fn a_fresh_token_is_used_without_refreshing() {
        let sim = identity_host(Duration::ZERO);
        let (_dir, store) = temp_store();
        let source = source(&store, stored(&sim, "AT-0", 3000));
        assert_eq!(source.access_token().await.unwrap().expose(), "AT-0");
        assert_eq!(source.refresh_count(), 0);
        assert_eq!(sim.requests(RequestKind::Token), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sixteen_concurrent_rejections_cause_one_refresh() {
        let sim = identity_host(Duration::from_millis(100));
        let (_dir, store) = temp_store();
        let source = Arc::new(source(&store, stored(&sim, "AT-0", 3000)));
        let rejected = source.access_token().await.unwrap();
        let workers: Vec<_> = (0..16)
            .map(|_| {
                let source = Arc::clone(&source);
                let rejected = rejected.clone();
                tokio::spawn(async move {
                    source.reject(&rejected).await.unwrap();
                    source.access_token().await.unwrap()
                })
            })
            .collect();
        let mut renewed = Vec::new();
        for worker in workers {
            renewed.push(worker.await.unwrap().expose().to_owned());
        }
        assert!(
            renewed.iter().all(|t| *t == renewed[0] && t != "AT-0"),
            "{renewed:?}"
        );
        assert_eq!(source.refresh_count(), 1);
        assert_eq!(sim.requests(RequestKind::Token), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_token_near_expiry_is_refreshed_once_for_all_callers() {
        let sim = identity_host(Duration::from_millis(50));
        let (_dir, store) = temp_store();
        let source = Arc::new(source(&store, stored(&sim, "AT-0", 60)));
        let callers: Vec<_> = (0..16)
            .map(|_| {
                let source = Arc::clone(&source);
                tokio::spawn(async move { source.access_token().await.unwrap() })
            })
            .collect();
        let mut renewed = Vec::new();
        for caller in callers {
            renewed.push(caller.await.unwrap().expose().to_owned());
        }
        assert!(
            renewed.iter().all(|t| *t == renewed[0] && t != "AT-0"),
            "{renewed:?}"
        );
        assert_eq!(sim.requests(RequestKind::Token), 1);
    }

    #[tokio::test]
    async fn rotated_refresh_tokens_are_stored_and_used_next_time() {
        let sim = identity_host(Duration::ZERO);
        let (_dir, store) = temp_store();
        let mut tokens = stored(&sim, "AT-0", -10);
        let first_refresh_token = tokens.refresh_token.clone().unwrap();
        tokens.username = Some("alice@contoso.com".into());
        store.save("default", &tokens).unwrap();
        let source = source(&store, tokens);

        let renewed = source.access_token().await.unwrap();
        assert_ne!(renewed.expose(), "AT-0");
        let on_disk = store.load("default").unwrap().unwrap();
        let rotated = on_disk.refresh_token.clone().unwrap();
        assert_ne!(rotated, first_refresh_token);
        assert_eq!(on_disk.access_token.as_ref(), Some(&renewed));
        assert_eq!(on_disk.username.as_deref(), Some("alice@contoso.com"));
        assert_eq!(on_disk.lifetime(), Some(Duration::from_secs(3599)));

        // The identity host accepts a refresh token once: this renewal works only with the rotated one.
        source.reject(&renewed).await.unwrap();
        let again = store.load("default").unwrap().unwrap();
        assert_ne!(again.refresh_token.unwrap(), rotated);
        assert_ne!(again.access_token.as_ref(), Some(&renewed));
        assert_eq!(sim.refreshes(), 2);
        assert_eq!(source.refresh_count(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_refused_refresh_ends_the_run_with_login_guidance_once() {
        let sim = identity_host(Duration::from_millis(20));
        let (_dir, store) = temp_store();
        let tokens = stored(&sim, "AT-0", 3000);
        let refresh_token = tokens.refresh_token.clone().unwrap();
        // 90 days without use, as far as the service is concerned.
        sim.revoke_refresh_tokens();
        let source = Arc::new(source(&store, tokens));
        let callers: Vec<_> = (0..8)
            .map(|_| {
                let source = Arc::clone(&source);
                tokio::spawn(async move { source.renew_rejected("AT-0").await.unwrap_err() })
            })
            .collect();
        for caller in callers {
            let err = caller.await.unwrap();
            assert!(err.is_refused(), "{err:?}");
            let text = err.to_string();
            assert!(text.contains("invalid_grant: AADSTS700082"), "{text}");
            assert!(
                text.ends_with("run `odbackup login`, then re-run the same command"),
                "{text}"
            );
            assert!(!text.contains(refresh_token.expose()), "{text}");
        }
        assert_eq!(
            sim.requests(RequestKind::Token),
            1,
            "a refused sign-in is not retried"
        );
        assert!(source.access_token().await.is_err());
        assert_eq!(source.refresh_count(), 0);
    }

    #[tokio::test]
    async fn transient_failures_are_retried_with_backoff() {
        let sim = identity_host(Duration::ZERO);
        sim.fail_next(1, Failure::unavailable(None).only(RequestKind::Token));
        sim.fail_next(
            1,
            Failure::oauth(
                400,
                "temporarily_unavailable",
                90_033,
                "A transient error has occurred. Please try again.",
            )
            .only(RequestKind::Token),
        );
        let (_dir, store) = temp_store();
        let source = source(&store, stored(&sim, "AT-0", -10));
        assert_ne!(source.access_token().await.unwrap().expose(), "AT-0");
        assert_eq!(sim.requests(RequestKind::Token), 3);
        assert_eq!(source.refresh_count(), 1);
    }

    #[tokio::test]
    async fn persistent_outages_give_up_after_the_attempt_budget() {
        let sim = identity_host(Duration::ZERO);
        sim.fail_always(Failure::unavailable(None).only(RequestKind::Token));
        let (_dir, store) = temp_store();
        let source = source(&store, stored(&sim, "AT-0", -10));
        let err = source.token().await.unwrap_err();
        assert!(err.is_transient() && !err.is_refused(), "{err:?}");
        assert_eq!(
            sim.requests(RequestKind::Token),
            u64::from(DEFAULT_REFRESH_ATTEMPTS)
        );
    }

    #[tokio::test]
    async fn an_early_refresh_that_fails_transiently_keeps_the_valid_token() {
        let sim = identity_host(Duration::ZERO);
        sim.fail_always(Failure::unavailable(None).only(RequestKind::Token));
        let (_dir, store) = temp_store();
        let source = source(&store, stored(&sim, "AT-0", 60));
        assert_eq!(source.access_token().await.unwrap().expose(), "AT-0");
        let after_first = sim.requests(RequestKind::Token);
        assert!(after_first > 0);
        // Cooling down: the next call doesn't hit the service again.
        assert_eq!(source.access_token().await.unwrap().expose(), "AT-0");
        assert_eq!(sim.requests(RequestKind::Token), after_first);
    }

    #[tokio::test]
    async fn an_expired_token_without_a_refresh_token_needs_a_new_sign_in() {
        let sim = identity_host(Duration::ZERO);
        let (_dir, store) = temp_store();
        let mut tokens = stored(&sim, "AT-0", -10);
        tokens.refresh_token = None;
        let source = source(&store, tokens);
        let err = source.token().await.unwrap_err();
        assert!(
            matches!(err, SignInError::NoRefreshToken) && err.is_refused(),
            "{err:?}"
        );
        assert_eq!(sim.requests(RequestKind::Token), 0);
    }
}
