//! The download host: serves pre-authenticated URLs (no bearer needed, a different origin from
//! Graph), with Range, expiry, and the reset/corruption faults.
//!
//! A URL carries a sealed `tempauth` naming the item, the content version (seed and length) it
//! was issued for, and its expiry, so it keeps serving the bytes it was minted for.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, RANGE};
use hyper::{Method, Request, Response, StatusCode};

use crate::graph::{seal, unseal};
use crate::server::{
    ContentStream, SimBody, enc_segment, failure_response, graph_error, set_header,
};
use crate::state::{InFlight, RequestKind, Shared, Which};
use crate::tree::{Flavour, World};

/// A fresh pre-authenticated URL for the file at `idx` (valid for the URL-lifetime knob).
pub(crate) fn mint_url(shared: &Shared, world: &World, idx: usize) -> String {
    mint_url_with(shared, world, idx, false)
}

/// [`mint_url`], serving a malware-flagged file when `infected_ok` (the client overrode the block).
pub(crate) fn mint_url_with(
    shared: &Shared,
    world: &World,
    idx: usize,
    infected_ok: bool,
) -> String {
    let it = &world.items[idx];
    let f = it.file().expect("download URLs are for files");
    let expires = shared.now_ms() + shared.knobs.url_lifetime_ms.load(Ordering::Relaxed);
    let token = seal(&format!(
        "t.{}.{}.{:x}.{}.{}.{}",
        it.drive,
        idx,
        f.seed,
        f.served_len(),
        expires,
        u8::from(infected_ok)
    ));
    let site = match world.flavour {
        Flavour::Personal => format!(
            "personal/{}",
            world.drives[it.drive].id.to_ascii_lowercase()
        ),
        Flavour::Business => "personal/megan_contoso_example".to_owned(),
    };
    if shared.knobs.url_credential_in_path.load(Ordering::Relaxed) {
        // The consumer form of 2015–2019: the credential is a path segment before the file's name
        // (`https://public.bn1304.livefilestore.com/y4m…/1.png`, onedrive-api-docs #143 and #106, where the
        // segment ran to 281 characters).
        return format!(
            "{}/y4m{}/{}?download&psid=1",
            shared.download_base,
            token,
            enc_segment(&it.name)
        );
    }
    let unique = crate::content::mix(crate::content::fnv1a(it.id.as_bytes()));
    format!(
        "{}/{}/_layouts/15/download.aspx?UniqueId={:016x}&Translate=false&tempauth={}&ApiVersion=2.0",
        shared.download_base, site, unique, token
    )
}

/// What a `tempauth` names.
struct Ticket {
    idx: usize,
    seed: u64,
    len: u64,
    expires_ms: u64,
    infected_ok: bool,
}

/// The ticket of a download URL: its `tempauth` query value, or a `y4m…` first path segment.
fn ticket(path: &str, query: Option<&str>) -> Option<Ticket> {
    let in_query = query.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "tempauth")
            .map(|(_, v)| v.into_owned())
    });
    let token = match in_query {
        Some(t) => t,
        None => path
            .trim_start_matches('/')
            .split('/')
            .next()?
            .strip_prefix("y4m")?
            .to_owned(),
    };
    let payload = unseal(&token)?;
    let p: Vec<&str> = payload.split('.').collect();
    if p.len() != 7 || p[0] != "t" {
        return None;
    }
    Some(Ticket {
        idx: p[2].parse().ok()?,
        seed: u64::from_str_radix(p[3], 16).ok()?,
        len: p[4].parse().ok()?,
        expires_ms: p[5].parse().ok()?,
        infected_ok: p[6] == "1",
    })
}

/// `Range: bytes=a-b | a- | -n` → inclusive `(start, end)`; `Ok(None)` = serve everything
/// (no header, other units, several ranges); `Err` = unsatisfiable (416).
pub(crate) fn parse_range(header: Option<&str>, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(h) = header else { return Ok(None) };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    if len == 0 {
        return Err(());
    }
    if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        return Ok(Some((len.saturating_sub(n), len - 1)));
    }
    let start: u64 = a.parse().map_err(|_| ())?;
    if start >= len {
        return Err(());
    }
    let end = if b.is_empty() {
        len - 1
    } else {
        b.parse::<u64>().map_err(|_| ())?
    };
    if end < start {
        return Err(());
    }
    Ok(Some((start, end.min(len - 1))))
}

/// Entry point for the download host.
pub(crate) async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<SimBody> {
    let guard = InFlight::new(&shared, Which::Download);
    let range = req
        .headers()
        .get(RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let ranged = range.is_some();
    shared.counters.count(RequestKind::Download);
    if ranged {
        shared.counters.count(RequestKind::DownloadWithRange);
    }
    if req.headers().contains_key(AUTHORIZATION) {
        shared
            .counters
            .auth_on_download_host
            .fetch_add(1, Ordering::Relaxed);
    }
    let uri = req.uri().to_string();
    // The URL carries no token: its requests count under the default budget, not an app's (a simplification).
    let (refusal, rate_headers) = shared
        .admit(RequestKind::Download, &uri, 1, "", ranged)
        .await;
    if let Some(f) = refusal {
        let mut r = failure_response(&shared, &f);
        crate::graph::add_rate_limit_headers(&mut r, rate_headers);
        return r;
    }
    if !(req.method() == Method::GET || req.method() == Method::HEAD) {
        return graph_error(&shared, 405, "invalidRequest", "Method not allowed");
    }
    let Some(t) = ticket(req.uri().path(), req.uri().query()) else {
        return graph_error(
            &shared,
            401,
            "unauthenticated",
            "Invalid or missing tempauth.",
        );
    };
    if shared.now_ms() >= t.expires_ms {
        shared.counters.expired_urls.fetch_add(1, Ordering::Relaxed);
        let status =
            u16::try_from(shared.knobs.expired_url_status.load(Ordering::Relaxed)).unwrap_or(401);
        let code = match status {
            401 => "unauthenticated",
            403 => "accessDenied",
            404 => "itemNotFound",
            _ => "invalidRequest",
        };
        return graph_error(&shared, status, code, "The download URL has expired.");
    }
    let (name, etag) = {
        let world = shared.world.read().expect("world lock");
        let Some(it) = world.items.get(t.idx) else {
            return graph_error(&shared, 404, "itemNotFound", "Item does not exist");
        };
        if it.deleted {
            return graph_error(&shared, 404, "itemNotFound", "Item does not exist");
        }
        if it.file().is_some_and(|f| f.malware.is_some()) && !t.infected_ok {
            return graph_error(&shared, 403, "malwareDetected", "Malware detected");
        }
        (
            it.name.clone(),
            format!("\"{{{:016X}}},{}\"", t.seed, it.version),
        )
    };
    if let Some(f) = shared.pick_failure(RequestKind::Download, ranged, Some(t.idx)) {
        return failure_response(&shared, &f);
    }
    shared
        .wait_while_held(RequestKind::Download, Some(t.idx))
        .await;
    let body = FileBody {
        idx: t.idx,
        seed: t.seed,
        len: t.len,
        name,
        etag,
    };
    let mut r = serve_file(
        &shared,
        &body,
        range.as_deref(),
        req.method() == Method::HEAD,
        Some(guard),
    );
    crate::graph::add_rate_limit_headers(&mut r, rate_headers);
    r
}

/// The content of one version of a file, as a host serves it.
pub(crate) struct FileBody {
    /// The item.
    pub idx: usize,
    /// The version's seed.
    pub seed: u64,
    /// Bytes served.
    pub len: u64,
    /// For `Content-Disposition`.
    pub name: String,
    /// The `ETag` header.
    pub etag: String,
}

/// A file's bytes with `Range` (unless the ignore-range knob is on), the reset, stall and corruption faults,
/// and the per-file log: the answer of the download host, and of `/content` when it serves bytes itself.
pub(crate) fn serve_file(
    shared: &Arc<Shared>,
    file: &FileBody,
    range: Option<&str>,
    head: bool,
    guard: Option<InFlight>,
) -> Response<SimBody> {
    {
        let mut logs = shared.counters.downloads.lock().expect("downloads lock");
        let log = logs.entry(file.idx).or_default();
        log.count += 1;
        log.ranges.push(range.map(str::to_owned));
    }
    let honour = !shared.knobs.ignore_range.load(Ordering::Relaxed);
    let span = match parse_range(if honour { range } else { None }, file.len) {
        Ok(s) => s,
        Err(()) => {
            let mut r = graph_error(
                shared,
                416,
                "invalidRange",
                "The requested range is not satisfiable.",
            );
            *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            set_header(&mut r, "content-range", &format!("bytes */{}", file.len));
            return r;
        }
    };
    let (status, start, end) = match span {
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b + 1),
        None => (StatusCode::OK, 0, file.len),
    };
    let corrupt_at = shared
        .knobs
        .corrupt
        .lock()
        .expect("corrupt lock")
        .get(&file.idx)
        .copied();
    let fault = if head {
        None
    } else {
        shared.pick_reset(file.idx, end - start)
    };
    let (cut_at, stall) = match fault {
        Some((at, None)) => (Some(start + at), None),
        Some((at, Some(pause))) => (None, Some((start + at, pause))),
        None => (None, None),
    };
    let body = if head {
        SimBody::empty()
    } else {
        SimBody::Content(Box::new(ContentStream {
            seed: file.seed,
            pos: start,
            end,
            cut_at,
            stall,
            corrupt_at,
            guard,
            shared: shared.clone(),
            cut_timer: None,
        }))
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    set_header(&mut r, "content-length", &(end - start).to_string());
    set_header(&mut r, "accept-ranges", "bytes");
    set_header(&mut r, "content-type", "application/octet-stream");
    set_header(&mut r, "etag", &file.etag);
    set_header(
        &mut r,
        "content-disposition",
        &format!("attachment; filename*=UTF-8''{}", enc_segment(&file.name)),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        set_header(
            &mut r,
            "content-range",
            &format!("bytes {}-{}/{}", start, end - 1, file.len),
        );
    }
    debug_assert!(r.headers().contains_key(CONTENT_LENGTH));
    r
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges_parse_like_http() {
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-4"), 10), Ok(Some((0, 4))));
        assert_eq!(parse_range(Some("bytes=5-"), 10), Ok(Some((5, 9))));
        assert_eq!(parse_range(Some("bytes=5-100"), 10), Ok(Some((5, 9))));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Ok(Some((7, 9))));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=4-2"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=0-"), 0), Err(()));
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), Ok(None));
        assert_eq!(parse_range(Some("items=0-1"), 10), Ok(None));
    }
}
