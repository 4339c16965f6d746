//! Which URLs may carry a credential. A bearer token goes to the Graph URL and a refresh token to the sign-in
//! URL; both must be `https`, except on this machine's loopback interface (a local simulator or proxy), where
//! nothing crosses a network. A plain-`http` URL to any other host would send the token in clear to whoever is
//! on the path.
//!
//! A leaf: `url` only. The command line calls [`check_credential_url`] to refuse such a URL as a usage error;
//! the Graph client and the sign-in flows call it again, so no caller of the library can skip it.

use std::net::IpAddr;

/// Whether `url`'s host is on the loopback interface: `127.0.0.0/8`, `::1` (or `::ffff:127.x.y.z`), or the
/// name `localhost`.
pub(crate) fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Some(url::Host::Domain(name)) => {
            name.eq_ignore_ascii_case("localhost")
                || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

/// Refuse a URL that would carry a credential in clear or to nowhere: it must be `https` with a host, or `http`
/// to a loopback host. `name` says which setting it is (`--graph-url`), for the message.
///
/// # Errors
/// A sentence saying what is wrong and what to write instead.
pub fn check_credential_url(name: &str, raw: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(raw).map_err(|e| format!("{name} {raw:?} is not a URL: {e}"))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{name} {raw:?} has no host"));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(format!(
            "{name} {raw:?} is plain http: your token would cross the network unencrypted; use https \
             (plain http is accepted only for a loopback host: 127.0.0.1, ::1 or localhost)"
        )),
        other => Err(format!("{name} must be an https URL, not {other}:")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_may_carry_a_token() {
        let ok = [
            "https://graph.microsoft.com/v1.0",
            "https://microsoftgraph.chinacloudapi.cn/v1.0",
            "http://127.0.0.1:8080/v1.0",
            "http://127.8.9.10/v1.0",
            "http://[::1]:9000/v1.0",
            "http://[::ffff:127.0.0.1]/v1.0",
            "http://localhost:3000",
            "http://LOCALHOST/v1.0",
        ];
        for url in ok {
            assert!(check_credential_url("--graph-url", url).is_ok(), "{url}");
        }
        let refused = [
            ("http://graph.microsoft.com/v1.0", "plain http"),
            ("http://10.0.0.1/v1.0", "plain http"),
            ("http://[::2]/v1.0", "plain http"),
            ("http://localhost.example.com/v1.0", "plain http"),
            ("http://128.0.0.1/v1.0", "plain http"),
            ("ftp://graph.microsoft.com/v1.0", "not ftp"),
            ("graph.microsoft.com/v1.0", "not a URL"),
            ("file:///etc/passwd", "no host"),
        ];
        for (url, why) in refused {
            let err = check_credential_url("--graph-url", url).unwrap_err();
            assert!(
                err.contains(why) && err.starts_with("--graph-url"),
                "{url}: {err}"
            );
        }
    }
}
