//! `login`, `logout` and `whoami`: their settings parsed and their prompts and results shown here; the
//! sign-in itself (the scopes asked for, who signed in, keeping it) is the library's (`app::keep_sign_in`,
//! `app::login_app`, `app::whoami`).

use super::ConfigValues;
use odbackup::Error;
use odbackup::app::{self, Credentials};
use odbackup::auth::AuthError;
use odbackup::auth::signin::{self, AuthSettings, BrowserLogin};
use odbackup::auth::store::TokenStore;
use odbackup::drives::{DrivesOf, SITES_SCOPE};
use odbackup::graph::{DriveSelector, GraphOptions, SiteRef};

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
        // Codes and refresh tokens go there: https, or plain http on this machine's loopback only.
        odbackup::endpoint::check_credential_url("--auth-url", &url).map_err(Error::Usage)?;
        url.trim_end_matches('/')
            .clone_into(&mut settings.login_base_url);
    }
    if let Some(scopes) = args.scopes.clone().or_else(|| file.scopes.clone()) {
        settings.scopes = scopes;
    }
    Ok(settings)
}

fn http() -> Result<reqwest::Client, Error> {
    odbackup::app::sign_in_http()
}

/// `odbackup login`. With `sites` (or when the config file names a site), `Sites.Read.All` is asked for too:
/// reading a SharePoint site needs it; with `write`, write access too, as `restore` needs.
pub async fn login(
    args: &AuthArgs,
    browser: bool,
    sites: bool,
    write: bool,
    graph: GraphOptions,
    file: &ConfigValues,
    credentials: &Credentials,
) -> Result<(), Error> {
    let mut settings = auth_settings(args, file)?;
    let (scopes, for_config) =
        app::login_scopes(settings.scopes, sites, file.site.is_some(), write);
    settings.scopes = scopes;
    if for_config {
        render::say(&format!(
            "The config file names a SharePoint site: asking for {SITES_SCOPE} too."
        ));
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
    let saved = app::keep_sign_in(graph, &settings, tokens, credentials).await?;
    render::say(&format!(
        "Signed in{} (account {:?}); tokens saved to {}",
        saved
            .username
            .as_deref()
            .map(|u| format!(" as {u}"))
            .unwrap_or_default(),
        credentials.account(),
        saved.path.display()
    ));
    Ok(())
}

/// `odbackup login --app`: check the credential file, get one token to prove the app and its credential are
/// accepted, and keep the sign-in (where the credential lives, never the credential) for later runs.
pub async fn login_app(
    args: &AuthArgs,
    certificate: Option<&std::path::Path>,
    secret_file: Option<&std::path::Path>,
    graph: GraphOptions,
    file: &ConfigValues,
    credentials: &Credentials,
) -> Result<(), Error> {
    use odbackup::auth::app::{self as app_auth, AppCredentialRef};
    let settings = auth_settings(args, file)?;
    let absolute = |p: &std::path::Path| {
        std::path::absolute(p).map_err(|e| Error::Usage(format!("{}: {e}", p.display())))
    };
    let credential = match (certificate, secret_file) {
        (Some(pem), None) => AppCredentialRef::Certificate {
            path: absolute(pem)?,
        },
        (None, Some(secret)) => AppCredentialRef::SecretFile {
            path: absolute(secret)?,
        },
        (None, None) if std::env::var_os(app_auth::SECRET_ENV).is_some() => {
            AppCredentialRef::SecretEnv
        }
        _ => {
            return Err(Error::Usage(format!(
                "--app needs the app's credential: --certificate PEM (the private key and the certificate, \
                 recommended), --client-secret-file FILE, or {} in the environment",
                app_auth::SECRET_ENV
            )));
        }
    };
    let (client_id, tenant, shown) = (
        settings.client_id.clone(),
        settings.tenant.clone(),
        credential.to_string(),
    );
    app::login_app(settings, credential, &graph.base_url, credentials).await?;
    render::say(&format!(
        "Signed in as app {client_id} in tenant {tenant} (account {:?}), with its {shown}; nothing secret was \
         stored: the credential is read again for each new token, so keep it in place (mode 0600)",
        credentials.account(),
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

/// The drive selected by flags, else by the config file, else the user's own. A flag naming the drive replaces
/// what the config file names (a `--user` on the command line is not mixed with a `site` in the file).
pub fn drive_selector(args: &DriveArgs, file: &ConfigValues) -> Result<DriveSelector, Error> {
    let flagged = args.drive_id.is_some() || args.user.is_some() || args.site.is_some();
    let (id, user, site, library) = if flagged {
        (
            args.drive_id.clone(),
            args.user.clone(),
            args.site.clone(),
            args.library.clone(),
        )
    } else {
        (
            file.drive_id.clone(),
            file.user.clone(),
            file.site.clone(),
            args.library.clone().or_else(|| file.library.clone()),
        )
    };
    if library.is_some() && site.is_none() {
        return Err(Error::Usage(
            "--library names a document library of a SharePoint site: give the site with --site too (or \
             `site` in the config file)"
                .to_owned(),
        ));
    }
    match (id, user, site) {
        (None, None, None) => Ok(DriveSelector::Me),
        (Some(id), None, None) => Ok(DriveSelector::Id(id.trim().to_owned().into())),
        (None, Some(upn), None) => Ok(DriveSelector::User(upn.trim().to_owned())),
        (None, None, Some(site)) => Ok(DriveSelector::Site {
            site: SiteRef::parse(&site).map_err(Error::Usage)?,
            library: library.map(|l| l.trim().to_owned()),
        }),
        _ => Err(Error::Usage(
            "choose at most one of drive_id, user and site".to_owned(),
        )),
    }
}

/// Whose drives `odbackup drives` lists.
pub fn drives_of(site: Option<&str>, user: Option<&str>) -> Result<DrivesOf, Error> {
    Ok(match (site, user) {
        (Some(site), _) => DrivesOf::Site(SiteRef::parse(site).map_err(Error::Usage)?),
        (None, Some(user)) => DrivesOf::User(user.trim().to_owned()),
        (None, None) => DrivesOf::Me,
    })
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
