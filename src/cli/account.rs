//! `login`, `logout` and `whoami`: the sign-in flows run by the library, with the codes, URLs and results
//! shown here.

use std::sync::Arc;
use std::time::SystemTime;

use odbackup::Error;
use odbackup::app::{self, Credentials};
use odbackup::auth::signin::{self, AuthSettings, BrowserLogin};
use odbackup::auth::store::{StoredTokens, TokenStore};
use odbackup::auth::{AuthError, StaticTokenSource};
use odbackup::config::ConfigValues;
use odbackup::graph::{DriveSelector, GraphClient, GraphOptions};

use super::render;
use super::{AuthArgs, DriveArgs};

/// The sign-in settings in force: flag/env, then config file, then defaults.
fn auth_settings(args: &AuthArgs, file: &ConfigValues) -> Result<AuthSettings, Error> {
    let client_id = args.client_id.clone().or_else(|| file.client_id.clone()).ok_or_else(|| {
        Error::Usage(
            "no client ID: register an app (README, \"Registering an app\") and pass --client-id, set \
             ODBACKUP_CLIENT_ID, or put client_id in the config file"
                .to_owned(),
        )
    })?;
    let mut settings = AuthSettings::new(client_id);
    if let Some(tenant) = args.tenant.clone().or_else(|| file.tenant.clone()) {
        settings.tenant = tenant;
    }
    if let Some(url) = args.auth_url.clone().or_else(|| file.auth_url.clone()) {
        url.trim_end_matches('/')
            .clone_into(&mut settings.login_base_url);
    }
    if let Some(scopes) = args.scopes.clone().or_else(|| file.scopes.clone()) {
        settings.scopes = scopes;
    }
    Ok(settings)
}

fn http() -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(30))
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .map_err(|e| Error::Usage(format!("could not build an HTTP client: {e}")))
}

/// `odbackup login` (`write`: ask for write access too, as `restore` needs).
pub async fn login(
    args: &AuthArgs,
    browser: bool,
    write: bool,
    graph: GraphOptions,
    file: &ConfigValues,
    credentials: &Credentials,
) -> Result<(), Error> {
    let mut settings = auth_settings(args, file)?;
    if write {
        settings.scopes = odbackup::auth::write::with_write_scope(settings.scopes);
    }
    let http = http()?;
    let tokens = if browser {
        let login = BrowserLogin::start(&settings)
            .await
            .map_err(AuthError::from)?;
        render::say(&format!(
            "Open this address in a browser to sign in (trying to open it for you):\n\n  {}\n",
            login.authorize_url()
        ));
        open_browser(login.authorize_url());
        login.finish(&http).await.map_err(AuthError::from)?
    } else {
        let authorization = signin::start_device_code(&http, &settings)
            .await
            .map_err(AuthError::from)?;
        render::say(&authorization.message);
        signin::poll_device_code(&http, &settings, &authorization)
            .await
            .map_err(AuthError::from)?
    };
    let mut stored = StoredTokens::from_response(&settings, tokens, SystemTime::now());
    // Who signed in, for `whoami` and this message; a failure here does not undo the sign-in.
    if let Some(access) = stored.access_token.clone() {
        let client = GraphClient::new(
            graph,
            Arc::new(StaticTokenSource::new(access.expose().to_owned())),
        )?;
        if let Ok(me) = client.me().await {
            stored.username = me.user_principal_name.or(me.mail).or(me.display_name);
        }
    }
    let store = TokenStore::open(credentials.config_dir.as_deref()).map_err(AuthError::from)?;
    store
        .save(credentials.account(), &stored)
        .map_err(AuthError::from)?;
    render::say(&format!(
        "Signed in{} (account {:?}); tokens saved to {}",
        stored
            .username
            .as_deref()
            .map(|u| format!(" as {u}"))
            .unwrap_or_default(),
        credentials.account(),
        store
            .path(credentials.account())
            .map_err(AuthError::from)?
            .display()
    ));
    Ok(())
}

/// `odbackup logout`.
pub fn logout(credentials: &Credentials) -> Result<(), Error> {
    let store = TokenStore::open(credentials.config_dir.as_deref()).map_err(AuthError::from)?;
    if store
        .remove(credentials.account())
        .map_err(AuthError::from)?
    {
        render::say(&format!(
            "Signed out of account {:?}",
            credentials.account()
        ));
    } else {
        render::say(&format!(
            "Account {:?} was not signed in",
            credentials.account()
        ));
    }
    Ok(())
}

/// `odbackup whoami`.
pub async fn whoami(
    graph: GraphOptions,
    credentials: &Credentials,
    drive: &DriveSelector,
    json: bool,
) -> Result<(), Error> {
    let who = app::whoami(graph, credentials, drive).await?;
    render::whoami(&who, json);
    Ok(())
}

/// The drive selected by flags, else by the config file, else the user's own.
pub fn drive_selector(args: &DriveArgs, file: &ConfigValues) -> Result<DriveSelector, Error> {
    let id = args.drive_id.clone().or_else(|| file.drive_id.clone());
    let user = args.user.clone().or_else(|| file.user.clone());
    let site = args.site.clone().or_else(|| file.site.clone());
    match (id, user, site) {
        (None, None, None) => Ok(DriveSelector::Me),
        (Some(id), None, None) => Ok(DriveSelector::Id(id.into())),
        (None, Some(upn), None) => Ok(DriveSelector::User(upn)),
        (None, None, Some(site)) => {
            if !site.contains(':') {
                return Err(Error::Usage(format!(
                    "--site {site:?}: give the host and the site path, like contoso.sharepoint.com:/sites/Team"
                )));
            }
            Ok(DriveSelector::Site(site))
        }
        _ => Err(Error::Usage(
            "choose at most one of drive_id, user and site".to_owned(),
        )),
    }
}

/// Best effort: the URL is always printed, so a machine without a browser loses nothing.
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(windows) {
        "explorer"
    } else {
        "xdg-open"
    };
    let _ = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}
