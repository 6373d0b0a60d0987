//! Paged and incremental pulls: what runner and docs must agree on, kept
//! pure so each rule is unit-tested.
//!
//! - The URL may hold `{{window.start}}` and `{{window.end}}` ([`UrlTemplate`]),
//!   distinct from the record templates' `{/json/pointer}`.
//! - A run's [`Window`] starts where the last completed one ended (the
//!   watermark in [`PullState`], kept on the pull Lease in
//!   [`PULL_STATE_ANNOTATION`]) and ends when the run starts; the first
//!   starts at `window.initialStart` or one schedule interval earlier.
//! - Within a run, [`Paging`] says which URL to request next and when the
//!   pages end. A run that reaches `maxPages` leaves its window
//!   [`PartialWindow`] with the next page, and the next run goes on there.
//! - A backfill is a fixed list of windows ([`backfill_windows`]) whose
//!   progress is kept in the same state.

use std::fmt;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::json_pointer::{JsonPointer, JsonPointerError};
use crate::schedule::Schedule;
use crate::spec::{Backfill, HttpPullSource, Pagination, TimeFormat, limits};

/// The Lease annotation holding a [`PullState`] as JSON.
pub const PULL_STATE_ANNOTATION: &str = "millrace.io/pull-state";

/// Why a paged or windowed pull cannot be set up or continued.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PagingError {
    #[error(
        "url {url:?}: '{{{{{name}}}}}' is not a window variable; use {{{{window.start}}}} or {{{{window.end}}}}"
    )]
    UnknownVariable { url: String, name: String },
    #[error("url {0:?}: '{{{{' is not closed by '}}}}'")]
    Unclosed(String),
    #[error("{0:?} is not an RFC 3339 time such as 2026-01-01T00:00:00Z")]
    Time(String),
    #[error("{0:?} is not an interval such as 30s, 5m or 1h")]
    Interval(String),
    #[error("backfill: from {from} is not before to {to}")]
    BackfillBackwards { from: String, to: String },
    #[error("backfill: to {0} is in the future")]
    BackfillInFuture(String),
    #[error(
        "backfill: {windows} windows of {size} from {from} to {to}; at most {max} are allowed, use a larger windowSize"
    )]
    TooManyWindows {
        windows: u64,
        size: String,
        from: String,
        to: String,
        max: u64,
    },
    #[error("{what} {url:?} is not a URL: {reason}")]
    BadUrl {
        what: &'static str,
        url: String,
        reason: String,
    },
    #[error("{0} does nothing unless the url uses {{{{window.start}}}} or {{{{window.end}}}}")]
    WindowUnused(&'static str),
    #[error("set exactly one of nextLink, linkHeader: true, cursor, page or offset ({0} are set)")]
    PaginationModes(usize),
    #[error("sizeParam sends size, which is not set")]
    SizeParamWithoutSize,
    #[error(transparent)]
    Pointer(#[from] JsonPointerError),
}

/// A half-open time range `[start, end)` a run asks the API for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "WindowText", into = "WindowText")]
pub struct Window {
    pub start: Timestamp,
    pub end: Timestamp,
}

#[derive(Serialize, Deserialize)]
struct WindowText {
    start: String,
    end: String,
}

impl TryFrom<WindowText> for Window {
    type Error = PagingError;
    fn try_from(w: WindowText) -> Result<Self, PagingError> {
        Ok(Self {
            start: parse_time(&w.start)?,
            end: parse_time(&w.end)?,
        })
    }
}

impl From<Window> for WindowText {
    fn from(w: Window) -> Self {
        Self {
            start: w.start.to_string(),
            end: w.end.to_string(),
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {})", self.start, self.end)
    }
}

/// An RFC 3339 time.
pub fn parse_time(text: &str) -> Result<Timestamp, PagingError> {
    text.parse().map_err(|_| PagingError::Time(text.to_owned()))
}

/// A time as the URL wants it.
pub fn format_time(t: Timestamp, format: TimeFormat) -> String {
    match format {
        TimeFormat::Rfc3339 => t.to_string(),
        TimeFormat::UnixSeconds => t.as_second().to_string(),
        TimeFormat::UnixMillis => t.as_millisecond().to_string(),
    }
}

/// Where a run goes on in its window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PagePosition {
    /// The next page's URL (`nextLink`, `linkHeader`).
    Url(String),
    /// The cursor to send.
    Cursor(String),
    /// The page number to send.
    Page(i64),
    /// The offset to send.
    Offset(i64),
}

/// A window a run left unfinished at `maxPages`: the next run requests
/// `next` in the same window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartialWindow {
    pub window: Window,
    pub next: PagePosition,
    /// Pages fetched in this window so far.
    pub pages: u64,
}

/// A backfill's progress: the windows before `doneUntil` are complete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackfillProgress {
    pub from: String,
    pub to: String,
    /// The window size used, so a changed spec is a new backfill.
    pub window_size: String,
    pub done_until: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<PartialWindow>,
    /// Windows completed.
    #[serde(default)]
    pub windows_done: u64,
    #[serde(default)]
    pub records: u64,
}

impl BackfillProgress {
    pub fn finished(&self) -> bool {
        self.done_until == self.to && self.partial.is_none()
    }

    fn is_for(&self, from: &str, to: &str, size: &str) -> bool {
        self.from == from && self.to == to && self.window_size == size
    }
}

/// What a pull source keeps between runs, on its Lease.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PullState {
    /// End of the last window whose every record Kafka acknowledged: the
    /// next window starts here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<String>,
    /// The window a run left at `maxPages`, continued before a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<PartialWindow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill: Option<BackfillProgress>,
}

/// How a run over one window ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunEnd {
    /// Every page of the window fetched and acknowledged.
    Complete,
    /// `maxPages` reached with every fetched page acknowledged; `next` is
    /// the page after them.
    Bounded { next: PagePosition, pages: u64 },
    /// Something failed: the state stays, so the window is repeated.
    Failed,
}

/// The next run of the schedule: the window a run left unfinished, or a new
/// one from the watermark to `now`.
pub fn plan_run(
    state: &PullState,
    initial_start: Option<Timestamp>,
    schedule: &Schedule,
    now: Timestamp,
) -> (Window, Option<PartialWindow>) {
    if let Some(partial) = &state.partial {
        return (partial.window, Some(partial.clone()));
    }
    let start = state
        .watermark
        .as_deref()
        .and_then(|w| parse_time(w).ok())
        .or(initial_start)
        .unwrap_or_else(|| now.checked_sub(interval(schedule, now)).unwrap_or(now));
    // A watermark ahead of this clock (another replica's clock) gives an
    // empty window rather than one running backwards.
    (
        Window {
            start,
            end: now.max(start),
        },
        None,
    )
}

/// The state after a scheduled run over `window`.
pub fn after_run(state: &PullState, window: Window, end: &RunEnd) -> PullState {
    let mut next = state.clone();
    match end {
        RunEnd::Complete => {
            next.watermark = Some(window.end.to_string());
            next.partial = None;
        }
        RunEnd::Bounded {
            next: position,
            pages,
        } => {
            next.partial = Some(PartialWindow {
                window,
                next: position.clone(),
                pages: *pages,
            });
        }
        RunEnd::Failed => {}
    }
    next
}

/// One schedule interval: the interval itself, or the gap between a cron
/// expression's next two runs after `now`.
pub fn interval(schedule: &Schedule, now: Timestamp) -> SignedDuration {
    match schedule {
        Schedule::Every(d) => SignedDuration::try_from(*d).unwrap_or(SignedDuration::ZERO),
        Schedule::Cron(_) => {
            let first = schedule.next_after(now);
            let second = first.and_then(|f| schedule.next_after(f));
            match (first, second) {
                (Some(a), Some(b)) => a.duration_until(b),
                _ => SignedDuration::from_secs(60),
            }
        }
    }
}

/// A backfill's windows, checked: `from < to <= now`, at most
/// [`limits::BACKFILL_WINDOWS_MAX`] of them. The last may be shorter.
pub fn backfill_windows(
    backfill: &Backfill,
    schedule: &Schedule,
    now: Timestamp,
) -> Result<Vec<Window>, PagingError> {
    let from = parse_time(&backfill.from)?;
    let to = parse_time(&backfill.to)?;
    if from >= to {
        return Err(PagingError::BackfillBackwards {
            from: backfill.from.clone(),
            to: backfill.to.clone(),
        });
    }
    if to > now {
        return Err(PagingError::BackfillInFuture(backfill.to.clone()));
    }
    let size = backfill_window_size(backfill, schedule, now)?;
    let span = from.duration_until(to);
    let (span, size_nanos) = (span.as_nanos(), size.as_nanos().max(1));
    let count = u64::try_from((span + size_nanos - 1) / size_nanos).unwrap_or(u64::MAX);
    if count > limits::BACKFILL_WINDOWS_MAX {
        return Err(PagingError::TooManyWindows {
            windows: count,
            size: format!("{size:#}"),
            from: backfill.from.clone(),
            to: backfill.to.clone(),
            max: limits::BACKFILL_WINDOWS_MAX,
        });
    }
    let mut windows = Vec::new();
    let mut start = from;
    while start < to {
        let end = start.checked_add(size).unwrap_or(to).min(to);
        windows.push(Window { start, end });
        start = end;
    }
    Ok(windows)
}

fn backfill_window_size(
    backfill: &Backfill,
    schedule: &Schedule,
    now: Timestamp,
) -> Result<SignedDuration, PagingError> {
    let size = match &backfill.window_size {
        Some(text) => match Schedule::parse(text) {
            Ok(Schedule::Every(d)) => SignedDuration::try_from(d).ok(),
            _ => None,
        }
        .ok_or_else(|| PagingError::Interval(text.clone()))?,
        None => interval(schedule, now),
    };
    if size <= SignedDuration::ZERO {
        return Err(PagingError::Interval(
            backfill.window_size.clone().unwrap_or_default(),
        ));
    }
    Ok(size)
}

/// The next backfill run: a window and where in it to start, or `None`
/// when the backfill is done. A backfill whose spec changed (another range
/// or size) starts over; the progress to record is returned with it.
pub fn plan_backfill(
    state: &PullState,
    backfill: &Backfill,
    windows: &[Window],
) -> Option<(BackfillProgress, Window, Option<PartialWindow>)> {
    let size = backfill.window_size.clone().unwrap_or_default();
    let progress = match &state.backfill {
        Some(p) if p.is_for(&backfill.from, &backfill.to, &size) => p.clone(),
        _ => BackfillProgress {
            from: backfill.from.clone(),
            to: backfill.to.clone(),
            window_size: size,
            done_until: backfill.from.clone(),
            partial: None,
            windows_done: 0,
            records: 0,
        },
    };
    if let Some(partial) = &progress.partial {
        return Some((progress.clone(), partial.window, Some(partial.clone())));
    }
    let done = parse_time(&progress.done_until).ok()?;
    let window = *windows.iter().find(|w| w.start >= done)?;
    Some((progress, window, None))
}

/// The state after a backfill run over `window`.
pub fn after_backfill_run(
    state: &PullState,
    mut progress: BackfillProgress,
    window: Window,
    end: &RunEnd,
    records: u64,
) -> PullState {
    progress.records += records;
    match end {
        RunEnd::Complete => {
            progress.done_until = window.end.to_string();
            progress.partial = None;
            progress.windows_done += 1;
        }
        RunEnd::Bounded { next, pages } => {
            progress.partial = Some(PartialWindow {
                window,
                next: next.clone(),
                pages: *pages,
            });
        }
        RunEnd::Failed => {}
    }
    // The windows list ends exactly at `to`, written as parsed: keep the
    // spec's text so `finished` compares like with like.
    if let (Ok(done), Ok(to)) = (parse_time(&progress.done_until), parse_time(&progress.to))
        && done >= to
    {
        progress.done_until = progress.to.clone();
    }
    PullState {
        backfill: Some(progress),
        ..state.clone()
    }
}

/// A URL with window variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlTemplate {
    parts: Vec<UrlPart>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum UrlPart {
    Literal(String),
    Start,
    End,
}

impl UrlTemplate {
    /// Parses `url`: `{{window.start}}` and `{{window.end}}` (spaces inside
    /// the braces allowed) are variables; any other `{{` is an error, so a
    /// misspelt variable is not sent to the API.
    pub fn parse(url: &str) -> Result<Self, PagingError> {
        let mut parts = Vec::new();
        let mut rest = url;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(UrlPart::Literal(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| PagingError::Unclosed(url.to_owned()))?;
            let name = after[..close].trim();
            parts.push(match name {
                "window.start" => UrlPart::Start,
                "window.end" => UrlPart::End,
                _ => {
                    return Err(PagingError::UnknownVariable {
                        url: url.to_owned(),
                        name: name.to_owned(),
                    });
                }
            });
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(UrlPart::Literal(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// Whether the URL reads the window at all.
    pub fn uses_window(&self) -> bool {
        self.parts.iter().any(|p| !matches!(p, UrlPart::Literal(_)))
    }

    /// The URL for `window`, the times percent-encoded.
    pub fn render(&self, window: Window, format: TimeFormat) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                UrlPart::Literal(text) => text.clone(),
                UrlPart::Start => percent_encode(&format_time(window.start, format)),
                UrlPart::End => percent_encode(&format_time(window.end, format)),
            })
            .collect()
    }
}

/// Percent-encodes all but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// How a run walks pages, compiled from `pagination`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Paging {
    /// One request per run.
    Single,
    NextLink(JsonPointer),
    LinkHeader,
    Cursor {
        path: JsonPointer,
        param: String,
    },
    Page(Numbered),
    Offset(Numbered),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Numbered {
    pub param: String,
    pub start: i64,
    pub size: Option<i64>,
    pub size_param: Option<String>,
}

/// What a run saw of one page, to decide on the next.
#[derive(Clone, Copy, Debug)]
pub struct PageSeen<'a> {
    /// The URL the page came from.
    pub url: &'a str,
    pub body: &'a Value,
    /// The response's `Link` header, if any.
    pub link: Option<&'a str>,
    /// Records on the page.
    pub records: usize,
    /// The position the page was requested at.
    pub position: Option<&'a PagePosition>,
}

impl Paging {
    pub fn from_spec(pagination: Option<&Pagination>) -> Result<Self, PagingError> {
        let Some(p) = pagination else {
            return Ok(Self::Single);
        };
        let numbered = |n: &crate::spec::NumberedPagination, default_start: i64| Numbered {
            param: n.param.clone(),
            start: n.start.unwrap_or(default_start),
            size: n.size.map(i64::from),
            size_param: n.size_param.clone(),
        };
        Ok(if let Some(pointer) = &p.next_link {
            Self::NextLink(JsonPointer::parse(pointer)?)
        } else if p.link_header == Some(true) {
            Self::LinkHeader
        } else if let Some(c) = &p.cursor {
            Self::Cursor {
                path: JsonPointer::parse(&c.path)?,
                param: c.param.clone(),
            }
        } else if let Some(n) = &p.page {
            Self::Page(numbered(n, 1))
        } else if let Some(n) = &p.offset {
            Self::Offset(numbered(n, 0))
        } else {
            Self::Single
        })
    }

    /// Where a window's first request starts.
    pub fn first_position(&self) -> Option<PagePosition> {
        match self {
            Self::Page(n) => Some(PagePosition::Page(n.start)),
            Self::Offset(n) => Some(PagePosition::Offset(n.start)),
            _ => None,
        }
    }

    /// The URL to request at `position`, from the window's URL `base`.
    pub fn request_url(
        &self,
        base: &str,
        position: Option<&PagePosition>,
    ) -> Result<String, PagingError> {
        match (self, position) {
            (_, None) => Ok(base.to_owned()),
            (_, Some(PagePosition::Url(url))) => Ok(url.clone()),
            (Self::Cursor { param, .. }, Some(PagePosition::Cursor(c))) => {
                with_query(base, &[(param.as_str(), c.as_str())])
            }
            (
                Self::Page(n) | Self::Offset(n),
                Some(PagePosition::Page(at) | PagePosition::Offset(at)),
            ) => {
                let at = at.to_string();
                let size = n.size.map(|s| s.to_string());
                let mut params = vec![(n.param.as_str(), at.as_str())];
                if let (Some(name), Some(size)) = (&n.size_param, &size) {
                    params.push((name.as_str(), size.as_str()));
                }
                with_query(base, &params)
            }
            // A position from another mode (the spec changed mid-window):
            // start the window's pages over.
            _ => Ok(base.to_owned()),
        }
    }

    /// The position after `page`, or `None` when it was the last. Every
    /// mode stops at an empty page, so a server that keeps answering never
    /// keeps a run going beyond its records.
    pub fn next(&self, page: PageSeen<'_>) -> Option<PagePosition> {
        if page.records == 0 {
            return None;
        }
        match self {
            Self::Single => None,
            Self::NextLink(pointer) => {
                let href = text_at(page.body, pointer)?;
                let url = resolve(page.url, &href).ok()?;
                (url != page.url).then_some(PagePosition::Url(url))
            }
            Self::LinkHeader => {
                let href = next_link(page.link?)?;
                let url = resolve(page.url, &href).ok()?;
                (url != page.url).then_some(PagePosition::Url(url))
            }
            Self::Cursor { path, .. } => {
                let cursor = text_at(page.body, path)?;
                let same = matches!(page.position, Some(PagePosition::Cursor(c)) if *c == cursor);
                (!same).then_some(PagePosition::Cursor(cursor))
            }
            Self::Page(n) => {
                if n.size.is_some_and(|s| (page.records as i64) < s) {
                    return None;
                }
                let at = match page.position {
                    Some(PagePosition::Page(at)) => *at,
                    _ => n.start,
                };
                Some(PagePosition::Page(at + 1))
            }
            Self::Offset(n) => {
                if n.size.is_some_and(|s| (page.records as i64) < s) {
                    return None;
                }
                let at = match page.position {
                    Some(PagePosition::Offset(at)) => *at,
                    _ => n.start,
                };
                Some(PagePosition::Offset(at + page.records as i64))
            }
        }
    }
}

/// A string or number at `pointer`, unless missing, null or empty.
fn text_at(body: &Value, pointer: &JsonPointer) -> Option<String> {
    match pointer.get(body)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The `rel="next"` target of a `Link` header (RFC 8288), such as
/// `<https://api.example/users?page=2>; rel="next", <...>; rel="last"`.
pub fn next_link(header: &str) -> Option<String> {
    let mut rest = header;
    loop {
        let open = rest.find('<')?;
        let close = open + rest[open..].find('>')?;
        let target = &rest[open + 1..close];
        let after = &rest[close + 1..];
        // The link's parameters run to the next link's '<' (a URL in a
        // parameter value would be quoted and rare; rel is what we read).
        let params_end = after.find('<').unwrap_or(after.len());
        let params = after[..params_end].trim_end().trim_end_matches(',');
        let is_next = params.split(';').any(|param| {
            let Some((name, value)) = param.split_once('=') else {
                return false;
            };
            name.trim().eq_ignore_ascii_case("rel")
                && value
                    .trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|rel| rel.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return Some(target.trim().to_owned());
        }
        rest = &after[params_end..];
    }
}

/// `href` resolved against `base` (RFC 3986); only http and https.
pub fn resolve(base: &str, href: &str) -> Result<String, PagingError> {
    let bad = |url: &str, reason: String| PagingError::BadUrl {
        what: "next page",
        url: url.to_owned(),
        reason,
    };
    let base = url::Url::parse(base).map_err(|e| bad(base, e.to_string()))?;
    let url = base.join(href).map_err(|e| bad(href, e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(href, "not http or https".into()));
    }
    Ok(url.into())
}

/// `url` with each of `params` set, replacing any of the same name.
pub fn with_query(url: &str, params: &[(&str, &str)]) -> Result<String, PagingError> {
    let mut parsed = url::Url::parse(url).map_err(|e| PagingError::BadUrl {
        what: "url",
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    let kept: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(k, _)| !params.iter().any(|(name, _)| k == name))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    parsed
        .query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .extend_pairs(params.iter().copied());
    Ok(parsed.into())
}

/// Checks a pull source's paging, window and backfill; used by
/// [`crate::validate`] and by the runner before its first run.
pub fn check_pull(pull: &HttpPullSource, now: Timestamp) -> Vec<(&'static str, PagingError)> {
    let mut problems = Vec::new();
    let uses_window = match UrlTemplate::parse(&pull.url) {
        Ok(t) => t.uses_window(),
        Err(e) => {
            problems.push(("url", e));
            true
        }
    };
    if let Some(p) = &pull.pagination {
        let modes = usize::from(p.next_link.is_some())
            + usize::from(p.link_header == Some(true))
            + usize::from(p.cursor.is_some())
            + usize::from(p.page.is_some())
            + usize::from(p.offset.is_some());
        if modes != 1 {
            problems.push(("pagination", PagingError::PaginationModes(modes)));
        }
        for (field, n) in [
            ("pagination.page", &p.page),
            ("pagination.offset", &p.offset),
        ] {
            if n.as_ref()
                .is_some_and(|n| n.size_param.is_some() && n.size.is_none())
            {
                problems.push((field, PagingError::SizeParamWithoutSize));
            }
        }
        if let Err(e) = Paging::from_spec(Some(p)) {
            problems.push(("pagination", e));
        }
    }
    if let Some(w) = &pull.window {
        if !uses_window {
            problems.push(("window", PagingError::WindowUnused("window")));
        }
        if let Some(start) = w.initial_start.as_deref()
            && let Err(e) = parse_time(start)
        {
            problems.push(("window.initialStart", e));
        }
    }
    if let Some(backfill) = &pull.backfill {
        if !uses_window {
            problems.push(("backfill", PagingError::WindowUnused("backfill")));
        }
        if let Ok(schedule) = Schedule::parse(&pull.schedule)
            && let Err(e) = backfill_windows(backfill, &schedule, now)
        {
            problems.push(("backfill", e));
        }
    }
    problems
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::spec::{CursorPagination, NumberedPagination};

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn window(start: &str, end: &str) -> Window {
        Window {
            start: at(start),
            end: at(end),
        }
    }

    #[test]
    fn window_variables_are_rendered_encoded_and_others_refused() {
        let t = UrlTemplate::parse(
            "https://api.example/users?since={{window.start}}&until={{ window.end }}&x=1",
        )
        .unwrap();
        assert!(t.uses_window());
        let w = window("2026-01-01T00:00:00Z", "2026-01-01T00:05:00.5Z");
        assert_eq!(
            t.render(w, TimeFormat::Rfc3339),
            "https://api.example/users?since=2026-01-01T00%3A00%3A00Z&until=2026-01-01T00%3A05%3A00.5Z&x=1"
        );
        assert_eq!(
            t.render(w, TimeFormat::UnixSeconds),
            "https://api.example/users?since=1767225600&until=1767225900&x=1"
        );
        assert_eq!(
            t.render(w, TimeFormat::UnixMillis),
            "https://api.example/users?since=1767225600000&until=1767225900500&x=1"
        );
        assert!(
            !UrlTemplate::parse("https://x.example/?a=1")
                .unwrap()
                .uses_window()
        );
        assert_eq!(
            UrlTemplate::parse("https://x.example/?s={{ .Window.Start }}"),
            Err(PagingError::UnknownVariable {
                url: "https://x.example/?s={{ .Window.Start }}".into(),
                name: ".Window.Start".into()
            })
        );
        assert!(
            UrlTemplate::parse("https://x.example/?s={{window.start")
                .unwrap_err()
                .to_string()
                .contains("not closed")
        );
        let message = UrlTemplate::parse("https://x.example/?s={{since}}")
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("'{{since}}' is not a window variable; use {{window.start}}"),
            "{message}"
        );
    }

    #[test]
    fn a_window_starts_at_the_watermark_and_ends_at_the_run() {
        let every5 = Schedule::parse("5m").unwrap();
        let now = at("2026-01-01T01:00:00Z");
        let fresh = PullState::default();
        assert_eq!(
            plan_run(&fresh, None, &every5, now),
            (window("2026-01-01T00:55:00Z", "2026-01-01T01:00:00Z"), None),
            "first run: one interval back"
        );
        assert_eq!(
            plan_run(&fresh, Some(at("2025-12-31T00:00:00Z")), &every5, now).0,
            window("2025-12-31T00:00:00Z", "2026-01-01T01:00:00Z"),
            "first run: initialStart"
        );
        let cron = Schedule::parse("0 * * * *").unwrap();
        assert_eq!(
            plan_run(&fresh, None, &cron, now).0.start,
            at("2026-01-01T00:00:00Z"),
            "a cron schedule's interval is the gap between its runs"
        );

        let w1 = plan_run(&fresh, None, &every5, now).0;
        let done = after_run(&fresh, w1, &RunEnd::Complete);
        assert_eq!(done.watermark.as_deref(), Some("2026-01-01T01:00:00Z"));
        let later = at("2026-01-01T01:05:07Z");
        let w2 = plan_run(&done, Some(at("2000-01-01T00:00:00Z")), &every5, later).0;
        assert_eq!(w2, window("2026-01-01T01:00:00Z", "2026-01-01T01:05:07Z"));
        assert_eq!(w2.start, w1.end, "contiguous: no gap, no overlap");

        // A failed run leaves the watermark: the next window covers it.
        let failed = after_run(&done, w2, &RunEnd::Failed);
        assert_eq!(failed, done);
        let w3 = plan_run(&failed, None, &every5, at("2026-01-01T01:10:00Z")).0;
        assert_eq!(w3.start, w1.end);

        // A watermark ahead of the clock gives an empty window.
        let ahead = plan_run(&done, None, &every5, at("2026-01-01T00:59:00Z")).0;
        assert_eq!(ahead.start, ahead.end);
    }

    #[test]
    fn a_run_cut_at_max_pages_is_continued_in_its_window() {
        let every5 = Schedule::parse("5m").unwrap();
        let w = window("2026-01-01T00:55:00Z", "2026-01-01T01:00:00Z");
        let state = after_run(
            &PullState::default(),
            w,
            &RunEnd::Bounded {
                next: PagePosition::Page(4),
                pages: 3,
            },
        );
        assert_eq!(state.watermark, None, "the window is not done");
        let (again, partial) = plan_run(&state, None, &every5, at("2026-01-01T01:05:00Z"));
        assert_eq!(again, w);
        assert_eq!(partial.unwrap().next, PagePosition::Page(4));
        let done = after_run(&state, w, &RunEnd::Complete);
        assert_eq!(
            (done.partial, done.watermark.as_deref()),
            (None, Some("2026-01-01T01:00:00Z"))
        );

        let text = serde_json::to_string(&state).unwrap();
        assert_eq!(
            text,
            r#"{"partial":{"window":{"start":"2026-01-01T00:55:00Z","end":"2026-01-01T01:00:00Z"},"next":{"page":4},"pages":3}}"#
        );
        assert_eq!(serde_json::from_str::<PullState>(&text).unwrap(), state);
    }

    fn backfill(from: &str, to: &str, size: Option<&str>) -> Backfill {
        Backfill {
            from: from.into(),
            to: to.into(),
            window_size: size.map(Into::into),
        }
    }

    #[test]
    fn a_backfill_is_split_into_bounded_windows() {
        let hourly = Schedule::parse("1h").unwrap();
        let now = at("2026-02-01T00:00:00Z");
        let b = backfill("2026-01-01T00:00:00Z", "2026-01-01T02:30:00Z", None);
        assert_eq!(
            backfill_windows(&b, &hourly, now).unwrap(),
            [
                window("2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"),
                window("2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z"),
                window("2026-01-01T02:00:00Z", "2026-01-01T02:30:00Z"),
            ]
        );
        let b = backfill("2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z", Some("20s"));
        assert_eq!(backfill_windows(&b, &hourly, now).unwrap().len(), 3);
        assert!(matches!(
            backfill_windows(
                &backfill("2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z", None),
                &hourly,
                now
            ),
            Err(PagingError::BackfillBackwards { .. })
        ));
        assert!(matches!(
            backfill_windows(
                &backfill("2026-01-01T00:00:00Z", "2026-03-01T00:00:00Z", None),
                &hourly,
                now
            ),
            Err(PagingError::BackfillInFuture(_))
        ));
        let e = backfill_windows(
            &backfill("2020-01-01T00:00:00Z", "2026-01-01T00:00:00Z", Some("1m")),
            &hourly,
            now,
        )
        .unwrap_err();
        assert!(e.to_string().contains("at most 10000"), "{e}");
        assert!(matches!(
            backfill_windows(
                &backfill("2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z", Some("1d")),
                &hourly,
                now
            ),
            Err(PagingError::Interval(_))
        ));
    }

    #[test]
    fn backfill_progress_resumes_and_a_changed_range_starts_over() {
        let hourly = Schedule::parse("1h").unwrap();
        let now = at("2026-02-01T00:00:00Z");
        let b = backfill("2026-01-01T00:00:00Z", "2026-01-01T02:00:00Z", None);
        let windows = backfill_windows(&b, &hourly, now).unwrap();
        let state = PullState::default();
        let (progress, w, partial) = plan_backfill(&state, &b, &windows).unwrap();
        assert_eq!((w, partial), (windows[0], None));
        let state = after_backfill_run(
            &state,
            progress,
            w,
            &RunEnd::Bounded {
                next: PagePosition::Cursor("c2".into()),
                pages: 1,
            },
            10,
        );
        let (progress, w, partial) = plan_backfill(&state, &b, &windows).unwrap();
        assert_eq!(
            (w, partial.unwrap().next),
            (windows[0], PagePosition::Cursor("c2".into()))
        );
        let state = after_backfill_run(&state, progress, w, &RunEnd::Complete, 5);
        let (progress, w, _) = plan_backfill(&state, &b, &windows).unwrap();
        assert_eq!(w, windows[1]);
        let state = after_backfill_run(&state, progress, w, &RunEnd::Complete, 7);
        let done = state.backfill.clone().unwrap();
        assert!(done.finished());
        assert_eq!((done.windows_done, done.records), (2, 22));
        assert_eq!(plan_backfill(&state, &b, &windows), None);

        let other = backfill("2026-01-01T00:00:00Z", "2026-01-01T03:00:00Z", None);
        let windows = backfill_windows(&other, &hourly, now).unwrap();
        let (progress, w, _) = plan_backfill(&state, &other, &windows).unwrap();
        assert_eq!((w, progress.windows_done), (windows[0], 0));
    }

    #[test]
    fn link_headers_yield_their_next_target() {
        assert_eq!(
            next_link(
                r#"<https://api.github.com/x?page=2>; rel="next", <https://api.github.com/x?page=5>; rel="last""#
            ),
            Some("https://api.github.com/x?page=2".into())
        );
        assert_eq!(
            next_link(r#"</x?page=1>; rel="prev", </x?page=3>; REL="next last""#),
            Some("/x?page=3".into())
        );
        assert_eq!(next_link("</x?page=3>; rel=next"), Some("/x?page=3".into()));
        assert_eq!(next_link(r#"</x?page=1>; rel="prev""#), None);
        assert_eq!(next_link(""), None);
        assert_eq!(next_link("<broken; rel=next"), None);
    }

    #[test]
    fn next_urls_are_resolved_against_the_page() {
        let base = "http://127.0.0.1:8080/api/users?since=a&page=1";
        assert_eq!(
            resolve(base, "?page=2").unwrap(),
            "http://127.0.0.1:8080/api/users?page=2"
        );
        assert_eq!(
            resolve(base, "/v2/u?c=x").unwrap(),
            "http://127.0.0.1:8080/v2/u?c=x"
        );
        assert_eq!(
            resolve(base, "more").unwrap(),
            "http://127.0.0.1:8080/api/more"
        );
        assert_eq!(
            resolve(base, "https://other.example/p").unwrap(),
            "https://other.example/p"
        );
        assert!(resolve(base, "file:///etc/passwd").is_err());
        assert_eq!(
            with_query(
                "http://h/a?page=1&q=x%20y",
                &[("page", "2"), ("per_page", "50")]
            )
            .unwrap(),
            "http://h/a?q=x+y&page=2&per_page=50"
        );
    }

    fn seen<'a>(
        url: &'a str,
        body: &'a Value,
        records: usize,
        position: Option<&'a PagePosition>,
    ) -> PageSeen<'a> {
        PageSeen {
            url,
            body,
            link: None,
            records,
            position,
        }
    }

    #[test]
    fn pages_stop_at_an_empty_or_short_page_or_without_a_next() {
        let url = "http://h/api?since=s";
        let body = json!({"info": {"next": "?since=s&page=2"}, "meta": {"cursor": "c2"}});
        let next_link = Paging::NextLink(JsonPointer::parse("/info/next").unwrap());
        assert_eq!(
            next_link.next(seen(url, &body, 10, None)),
            Some(PagePosition::Url("http://h/api?since=s&page=2".into()))
        );
        assert_eq!(
            next_link.next(seen(url, &body, 0, None)),
            None,
            "empty page"
        );
        for last in [
            json!({"info": {"next": null}}),
            json!({"info": {"next": ""}}),
            json!({"info": {}}),
        ] {
            assert_eq!(next_link.next(seen(url, &last, 10, None)), None, "{last}");
        }
        let looping = json!({"info": {"next": url}});
        assert_eq!(
            next_link.next(seen(url, &looping, 10, None)),
            None,
            "a link to itself"
        );

        let header = Paging::LinkHeader;
        let mut page = seen(url, &body, 3, None);
        page.link = Some(r#"</api?since=s&page=2>; rel="next""#);
        assert_eq!(
            header.next(page),
            Some(PagePosition::Url("http://h/api?since=s&page=2".into()))
        );
        page.link = None;
        assert_eq!(header.next(page), None);

        let cursor = Paging::from_spec(Some(&Pagination {
            cursor: Some(CursorPagination {
                path: "/meta/cursor".into(),
                param: "after".into(),
            }),
            ..pagination()
        }))
        .unwrap();
        assert_eq!(cursor.first_position(), None);
        assert_eq!(
            cursor.next(seen(url, &body, 5, None)),
            Some(PagePosition::Cursor("c2".into()))
        );
        let c2 = PagePosition::Cursor("c2".into());
        assert_eq!(
            cursor.next(seen(url, &body, 5, Some(&c2))),
            None,
            "the same cursor again"
        );
        assert_eq!(
            cursor.request_url(url, Some(&c2)).unwrap(),
            "http://h/api?since=s&after=c2"
        );

        let page_mode = Paging::from_spec(Some(&Pagination {
            page: Some(NumberedPagination {
                param: "page".into(),
                start: None,
                size: Some(10),
                size_param: Some("per_page".into()),
            }),
            ..pagination()
        }))
        .unwrap();
        let first = page_mode.first_position().unwrap();
        assert_eq!(first, PagePosition::Page(1));
        assert_eq!(
            page_mode.request_url(url, Some(&first)).unwrap(),
            "http://h/api?since=s&page=1&per_page=10"
        );
        assert_eq!(
            page_mode.next(seen(url, &body, 10, Some(&first))),
            Some(PagePosition::Page(2))
        );
        assert_eq!(
            page_mode.next(seen(url, &body, 9, Some(&first))),
            None,
            "short page"
        );

        let offset = Paging::from_spec(Some(&Pagination {
            offset: Some(NumberedPagination {
                param: "offset".into(),
                start: None,
                size: None,
                size_param: None,
            }),
            ..pagination()
        }))
        .unwrap();
        let first = offset.first_position().unwrap();
        assert_eq!(first, PagePosition::Offset(0));
        assert_eq!(
            offset.next(seen(url, &body, 7, Some(&first))),
            Some(PagePosition::Offset(7))
        );
        assert_eq!(offset.next(seen(url, &body, 0, Some(&first))), None);

        assert_eq!(Paging::Single.next(seen(url, &body, 10, None)), None);
    }

    fn pagination() -> Pagination {
        serde_json::from_value(json!({})).unwrap()
    }

    #[test]
    fn pull_specs_are_checked() {
        let now = at("2026-02-01T00:00:00Z");
        let mut pull = HttpPullSource::new("https://x.example/?s={{window.begin}}", "5m");
        pull.backfill = Some(backfill(
            "2026-01-02T00:00:00Z",
            "2026-01-01T00:00:00Z",
            None,
        ));
        let fields: Vec<&str> = check_pull(&pull, now).iter().map(|(f, _)| *f).collect();
        assert_eq!(fields, ["url", "backfill"]);

        let mut pull = HttpPullSource::new("https://x.example/?a=1", "5m");
        pull.window = Some(serde_json::from_value(json!({})).unwrap());
        pull.backfill = Some(backfill(
            "2026-01-01T00:00:00Z",
            "2026-01-02T00:00:00Z",
            None,
        ));
        pull.pagination = Some(serde_json::from_value(json!({"linkHeader": true, "nextLink": "/next", "page": {"param": "p", "sizeParam": "n"}})).unwrap());
        let problems: Vec<String> = check_pull(&pull, now)
            .iter()
            .map(|(f, e)| format!("{f}: {e}"))
            .collect();
        assert_eq!(
            problems,
            [
                "pagination: set exactly one of nextLink, linkHeader: true, cursor, page or offset (3 are set)",
                "pagination.page: sizeParam sends size, which is not set",
                "window: window does nothing unless the url uses {{window.start}} or {{window.end}}",
                "backfill: backfill does nothing unless the url uses {{window.start}} or {{window.end}}",
            ]
        );
        let mut good = HttpPullSource::new("https://x.example/?since={{window.start}}", "5m");
        good.pagination = Some(
            serde_json::from_value(json!({"cursor": {"path": "/c", "param": "c"}, "maxPages": 5}))
                .unwrap(),
        );
        good.backfill = Some(backfill(
            "2026-01-01T00:00:00Z",
            "2026-01-02T00:00:00Z",
            Some("1h"),
        ));
        assert_eq!(check_pull(&good, now), []);
    }
}
