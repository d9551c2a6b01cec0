//! The blocking capture itself: one tab, one page, five images.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine;
use headless_chrome::browser::tab::RequestPausedDecision;
use headless_chrome::protocol::cdp::Fetch::events::RequestPausedEvent;
use headless_chrome::protocol::cdp::{Emulation, Fetch, Network, Page};
use headless_chrome::Tab;

use super::check::{self, DomProbe, PageResponse, ROUTER_MARKER_HEADER};
use super::egress;
use super::{
    BrowserHost, CaptureError, CaptureOutcome, CaptureRequest, CaptureTimings, ImageRef,
    ImageStore, PageFacts, Screenshots,
};

/// Tallest full-page capture, in CSS pixels (WebP's limit is 16383; a
/// hostile "infinite" page must not make a 100 MB image).
pub const FULL_PAGE_MAX_HEIGHT: u32 = 8000;
/// WebP quality for screenshots (Chromium's encoder, 0–100).
pub const WEBP_QUALITY: u32 = 80;
/// WebP quality for thumbnails: small on the index, detail matters less.
pub const THUMBNAIL_QUALITY: u32 = 60;

/// Collected in the page after load. The page is untrusted: everything it
/// returns is re-capped on our side.
const PROBE_JS: &str = r#"JSON.stringify((() => {
  const meta = n => { const m = document.querySelector('meta[name="' + n + '"]'); return m ? m.getAttribute('content') : null; };
  const shown = e => { const r = e.getBoundingClientRect(); const s = getComputedStyle(e); return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none'; };
  const body = document.body;
  return {
    title: document.title || null,
    description: meta('description'),
    headings: Array.from(document.querySelectorAll('h1,h2,h3')).filter(shown).map(e => (e.innerText || '').trim()).filter(t => t).slice(0, 20),
    router_meta: meta('byteport-router'),
    text_chars: body ? (body.innerText || '').trim().length : 0,
    media: body ? body.querySelectorAll('img,canvas,video,svg,picture,iframe,object').length : 0
  };
})())"#;

/// Dialogs would block the page (and our calls) until answered.
const NO_DIALOGS_JS: &str = "window.alert = () => {}; window.confirm = () => false; window.prompt = () => null; window.print = () => {};";

/// Most blocked requests remembered per capture.
const MAX_BLOCKED: usize = 20;

#[derive(serde::Deserialize, Default)]
struct RawProbe {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    headings: Vec<String>,
    #[serde(flatten)]
    dom: DomProbe,
}

fn cdp(step: &'static str) -> impl Fn(anyhow::Error) -> CaptureError {
    move |e| CaptureError::Browser {
        step,
        message: format!("{e:#}"),
    }
}

/// One capture, start to end, on the calling (blocking) thread.
pub(super) fn capture_blocking(
    host: &BrowserHost,
    images: &ImageStore,
    request: &CaptureRequest,
) -> Result<(CaptureOutcome, CaptureTimings), CaptureError> {
    let mut timings = CaptureTimings::default();
    let started = Instant::now();
    let (browser, _launched) = host.browser()?;
    timings.browser_start = started.elapsed();

    let started = Instant::now();
    let tab = browser.new_tab().map_err(cdp("opening a tab"))?;
    let result = (|| {
        tab.set_default_timeout(request.load_timeout);
        let Some(app) = egress::Origin::of(&request.url) else {
            return Ok(refused(
                format!("{} is not an http(s) URL", request.url),
                None,
            ));
        };
        let blocked = guard_egress(&tab, app)?;
        tab.call_method(Page::AddScriptToEvaluateOnNewDocument {
            source: NO_DIALOGS_JS.into(),
            world_name: None,
            include_command_line_api: None,
            run_immediately: None,
        })
        .map_err(cdp("disabling dialogs"))?;
        let response = watch_main_response(&tab)?;
        // The browser is shared between captures: never show an earlier
        // visit's copy of a page (a stopped app would look alive).
        tab.call_method(Network::SetCacheDisabled {
            cache_disabled: true,
        })
        .map_err(cdp("disabling the cache"))?;
        set_viewport(&tab, 1280, 800, 1.0, false)?;
        if let Err(e) = tab.navigate_to(&request.url) {
            // A navigation error is the page's fault (connection refused,
            // DNS, TLS), not the browser's.
            return Ok(refused(format!("the page did not load: {e:#}"), None));
        }
        if let Err(e) = tab.wait_until_navigated() {
            return Ok(refused(
                format!(
                    "the page did not finish loading within {} s: {e:#}",
                    request.load_timeout.as_secs()
                ),
                None,
            ));
        }
        std::thread::sleep(request.wait);
        let probe = probe(&tab)?;
        timings.page_load = started.elapsed();
        let page = PageFacts {
            title: probe
                .title
                .map(|t| cap_chars(&t, 300))
                .filter(|t| !t.is_empty()),
            description: probe
                .description
                .map(|t| cap_chars(&t, 500))
                .filter(|t| !t.is_empty()),
            headings: probe
                .headings
                .iter()
                .take(20)
                .map(|h| cap_chars(h, 200))
                .collect(),
            blocked_requests: blocked.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        };
        let seen = response.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(reason) = check::refusal(seen.as_ref(), &probe.dom) {
            return Ok(refused(reason, Some(page)));
        }

        let started = Instant::now();
        let raw = take_shots(&tab)?;
        timings.captures = started.elapsed();

        let started = Instant::now();
        let desktop_rgb =
            image::load_from_memory_with_format(&raw.desktop, image::ImageFormat::WebP)
                .map_err(|e| CaptureError::Browser {
                    step: "decoding the desktop capture",
                    message: e.to_string(),
                })?
                .to_rgb8();
        if let Some(reason) = check::near_uniform(&desktop_rgb) {
            timings.encode_store = started.elapsed();
            return Ok(refused(reason, Some(page)));
        }
        let store = |bytes: &[u8]| -> Result<ImageRef, CaptureError> {
            let (w, h) = webp_dimensions(bytes)?;
            images
                .put_webp(bytes, w, h)
                .map_err(|source| CaptureError::Store {
                    dir: images.dir().display().to_string(),
                    source,
                })
        };
        let shots = Screenshots {
            desktop: store(&raw.desktop)?,
            mobile: store(&raw.mobile)?,
            full_page: store(&raw.full_page)?,
            open_graph: store(&raw.open_graph)?,
            thumbnail: store(&raw.thumbnail)?,
        };
        timings.encode_store = started.elapsed();
        Ok(CaptureOutcome::Captured { shots, page })
    })();
    // Closing can fail when the browser died; the next capture restarts it.
    let _ = tab.close(false);
    result.map(|outcome| (outcome, timings))
}

fn refused(reason: String, page: Option<PageFacts>) -> CaptureOutcome {
    CaptureOutcome::Refused { reason, page }
}

fn cap_chars(s: &str, max: usize) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() <= max {
        s
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// Pauses every request of the tab and fails those [`egress::check`]
/// refuses; returns the list of what was blocked (URL and why).
fn guard_egress(
    tab: &Arc<Tab>,
    app: egress::Origin,
) -> Result<Arc<Mutex<Vec<String>>>, CaptureError> {
    let blocked = Arc::new(Mutex::new(Vec::new()));
    let sink = blocked.clone();
    tab.enable_fetch(
        Some(&[Fetch::RequestPattern {
            url_pattern: Some("*".into()),
            resource_Type: None,
            request_stage: Some(Fetch::RequestStage::Request),
        }]),
        None,
    )
    .map_err(cdp("enabling request interception"))?;
    tab.enable_request_interception(Arc::new(
        move |_transport, _session, event: RequestPausedEvent| {
            let url = &event.params.request.url;
            match egress::check(url, &app) {
                Ok(()) => RequestPausedDecision::Continue(None),
                Err(why) => {
                    let mut list = sink.lock().unwrap_or_else(|e| e.into_inner());
                    if list.len() < MAX_BLOCKED {
                        list.push(format!("{}: {why}", cap_chars(url, 200)));
                    }
                    RequestPausedDecision::Fail(Fetch::FailRequest {
                        request_id: event.params.request_id,
                        error_reason: Network::ErrorReason::BlockedByClient,
                    })
                }
            }
        },
    ))
    .map_err(cdp("enabling request interception"))?;
    Ok(blocked)
}

/// Records the main document's final response (status, router marker).
fn watch_main_response(tab: &Arc<Tab>) -> Result<Arc<Mutex<Option<PageResponse>>>, CaptureError> {
    let seen = Arc::new(Mutex::new(None::<PageResponse>));
    let main_frame = tab.get_target_id().clone();
    let sink = seen.clone();
    tab.register_response_handling(
        "byteport-main-document",
        Box::new(move |params, _body| {
            if params.Type != Network::ResourceType::Document
                || params.frame_id.as_deref() != Some(main_frame.as_str())
            {
                return;
            }
            let marker = params
                .response
                .headers
                .0
                .as_ref()
                .and_then(|h| h.as_object())
                .and_then(|h| {
                    h.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(ROUTER_MARKER_HEADER))
                        .and_then(|(_, v)| v.as_str())
                        .map(|v| v.trim().to_ascii_lowercase())
                });
            *sink.lock().unwrap_or_else(|e| e.into_inner()) = Some(PageResponse {
                status: u16::try_from(params.response.status).unwrap_or(0),
                router_marker: marker,
            });
        }),
    )
    .map_err(cdp("enabling network events"))?;
    Ok(seen)
}

fn set_viewport(
    tab: &Tab,
    width: u32,
    height: u32,
    device_scale_factor: f64,
    mobile: bool,
) -> Result<(), CaptureError> {
    tab.call_method(Emulation::SetDeviceMetricsOverride {
        width,
        height,
        device_scale_factor,
        mobile,
        scale: None,
        screen_width: None,
        screen_height: None,
        position_x: None,
        position_y: None,
        dont_set_visible_size: None,
        screen_orientation: None,
        viewport: None,
        display_feature: None,
        device_posture: None,
    })
    .map_err(cdp("setting the viewport"))?;
    // Two animation frames: responsive layout and late paints settle.
    tab.evaluate(
        "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))",
        true,
    )
    .map_err(cdp("waiting for a frame"))?;
    Ok(())
}

fn probe(tab: &Tab) -> Result<RawProbe, CaptureError> {
    let _ = tab.evaluate(
        "document.fonts ? document.fonts.ready.then(() => true) : true",
        true,
    );
    let value = tab
        .evaluate(PROBE_JS, false)
        .map_err(cdp("reading the page"))?
        .value;
    // A page that broke JSON.stringify gives nothing usable: treat it as
    // an empty probe rather than an error.
    Ok(value
        .as_ref()
        .and_then(|v| v.as_str())
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default())
}

struct RawShots {
    desktop: Vec<u8>,
    thumbnail: Vec<u8>,
    full_page: Vec<u8>,
    open_graph: Vec<u8>,
    mobile: Vec<u8>,
}

fn screenshot(
    tab: &Tab,
    quality: u32,
    clip: Option<Page::Viewport>,
    beyond_viewport: bool,
) -> Result<Vec<u8>, CaptureError> {
    let data = tab
        .call_method(Page::CaptureScreenshot {
            format: Some(Page::CaptureScreenshotFormatOption::Webp),
            quality: Some(quality),
            clip,
            from_surface: Some(true),
            capture_beyond_viewport: Some(beyond_viewport),
            optimize_for_speed: None,
        })
        .map_err(cdp("capturing a screenshot"))?
        .data;
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| CaptureError::Browser {
            step: "decoding a screenshot",
            message: e.to_string(),
        })
}

fn take_shots(tab: &Tab) -> Result<RawShots, CaptureError> {
    // The tab is at 1280×800 already.
    let desktop = screenshot(tab, WEBP_QUALITY, None, false)?;
    let thumbnail = screenshot(
        tab,
        THUMBNAIL_QUALITY,
        Some(Page::Viewport {
            x: 0.0,
            y: 0.0,
            width: 1280.0,
            height: 800.0,
            scale: 0.25,
        }),
        false,
    )?;
    let metrics = tab
        .call_method(Page::GetLayoutMetrics(None))
        .map_err(cdp("measuring the page"))?;
    let content_height = metrics.css_content_size.height.ceil();
    let height = if content_height.is_finite() {
        (content_height as u32).clamp(800, FULL_PAGE_MAX_HEIGHT)
    } else {
        800
    };
    let full_page = screenshot(
        tab,
        WEBP_QUALITY,
        Some(Page::Viewport {
            x: 0.0,
            y: 0.0,
            width: 1280.0,
            height: f64::from(height),
            scale: 1.0,
        }),
        true,
    )?;
    set_viewport(tab, 1200, 630, 1.0, false)?;
    let open_graph = screenshot(tab, WEBP_QUALITY, None, false)?;
    set_viewport(tab, 390, 844, 2.0, true)?;
    let mobile = screenshot(tab, WEBP_QUALITY, None, false)?;
    Ok(RawShots {
        desktop,
        thumbnail,
        full_page,
        open_graph,
        mobile,
    })
}

/// Width and height from the WebP header (no full decode).
pub(crate) fn webp_dimensions(bytes: &[u8]) -> Result<(u32, u32), CaptureError> {
    image::ImageReader::with_format(std::io::Cursor::new(bytes), image::ImageFormat::WebP)
        .into_dimensions()
        .map_err(|e| CaptureError::Browser {
            step: "reading a screenshot's size",
            message: e.to_string(),
        })
}
