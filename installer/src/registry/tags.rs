//! `GET /v2/_catalog` and `GET /v2/<name>/tags/list`, with registry:2's `n`/`last`
//! pagination: entries after `last`, at most `n`, and a `Link: <…>; rel="next"`
//! header while more remain.

use axum::http::{header, HeaderValue};
use serde_json::json;

use super::error::{ApiError, ApiResult, Code};
use super::router::{json_response, Ctx, Query, State};

/// The most entries one page may hold, whatever `n` asks for.
const MAX_PAGE: usize = 10_000;

/// Where the next page starts: (`last`, `n`).
type Next = Option<(String, usize)>;

/// One page of sorted `items`, and where the next page starts if any remain.
fn page<'a>(
    items: impl Iterator<Item = &'a String>,
    q: &Query,
) -> Result<(Vec<String>, Next), ApiError> {
    let n = match q.get("n") {
        None | Some("") => None,
        Some(v) => Some(v.parse::<usize>().map_err(|_| {
            ApiError::new(Code::PaginationNumberInvalid).detail(format!("n={v:?}"))
        })?),
    };
    let last = q.get("last").unwrap_or_default();
    let limit = n.unwrap_or(MAX_PAGE).min(MAX_PAGE);
    let mut rest = items.filter(|i| last.is_empty() || i.as_str() > last);
    let out: Vec<String> = rest.by_ref().take(limit).cloned().collect();
    let next = match (out.last(), rest.next()) {
        (Some(l), Some(_)) => Some((l.clone(), limit)),
        _ => None,
    };
    Ok((out, next))
}

fn link(path: &str, next: Next, resp: &mut axum::response::Response) {
    if let Some((last, n)) = next {
        let v = format!("<{path}?last={last}&n={n}>; rel=\"next\"");
        if let Ok(v) = HeaderValue::from_str(&v) {
            resp.headers_mut().insert(header::LINK, v);
        }
    }
}

pub fn catalog(state: &State, q: &Query) -> ApiResult {
    let cat = state.images.get();
    let mut shown: Vec<&String> = cat.repos.values().map(|r| &r.shown).collect();
    shown.sort();
    let (repos, next) = page(shown.into_iter(), q)?;
    let mut resp =
        json_response(serde_json::to_vec(&json!({ "repositories": repos })).expect("json"));
    link("/v2/_catalog", next, &mut resp);
    Ok(resp)
}

pub fn list(ctx: &Ctx) -> ApiResult {
    let cat = ctx.state.images.get();
    let repo = cat
        .repos
        .get(&ctx.repo)
        .ok_or_else(|| ApiError::new(Code::NameUnknown).detail(ctx.raw_name.clone()))?;
    let (tags, next) = page(repo.tags.keys(), &ctx.query)?;
    let mut resp = json_response(
        serde_json::to_vec(&json!({ "name": ctx.raw_name, "tags": tags })).expect("json"),
    );
    link(&format!("/v2/{}/tags/list", ctx.raw_name), next, &mut resp);
    Ok(resp)
}
