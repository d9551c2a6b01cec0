//! Is this capture worth publishing? Broken pages and blank images are
//! refused with a reason the owner can act on.

/// The response header BytePort's router sets on its own pages (404 "no app
/// here", 502 "app not running", 400): `x-byteport-router: error`.
pub const ROUTER_MARKER_HEADER: &str = "x-byteport-router";
/// The same marker inside the page, for proxies that drop headers:
/// `<meta name="byteport-router" content="error">`.
pub const ROUTER_MARKER_META: &str = "byteport-router";

/// What the browser saw of the main document.
#[derive(Debug, Clone, Default)]
pub struct PageResponse {
    /// HTTP status of the main document (after redirects).
    pub status: u16,
    /// `x-byteport-router` header value, lowercased, if present.
    pub router_marker: Option<String>,
}

/// What the page's DOM says (collected in the page after load).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct DomProbe {
    /// `content` of `<meta name="byteport-router">`, if any.
    #[serde(default)]
    pub router_meta: Option<String>,
    /// Characters of visible text in `<body>`.
    #[serde(default)]
    pub text_chars: u64,
    /// Images, canvases, videos and SVGs in `<body>`.
    #[serde(default)]
    pub media: u64,
}

/// Why a capture is refused; `None` when the page looks fine.
pub fn refusal(response: Option<&PageResponse>, dom: &DomProbe) -> Option<String> {
    let router_page = response
        .and_then(|r| r.router_marker.as_deref())
        .is_some_and(|m| m == "error")
        || dom.router_meta.as_deref().map(str::trim) == Some("error");
    match response {
        None => return Some("the page sent no HTTP response for its main document".into()),
        Some(r) if router_page => {
            return Some(format!(
                "the router answered instead of the app (HTTP {}): the app was not running when the screenshot was taken",
                r.status
            ))
        }
        Some(r) if !(200..300).contains(&r.status) => {
            return Some(format!(
                "the app answered HTTP {} instead of a 2xx page",
                r.status
            ))
        }
        Some(_) => {}
    }
    if router_page {
        return Some("the router's error page was shown instead of the app".into());
    }
    if dom.text_chars == 0 && dom.media == 0 {
        return Some("the page's body is empty (no text, images or canvas)".into());
    }
    None
}

/// Share of pixels that must match the dominant colour for an image to
/// count as blank. A page with one line of text sits well below it (a
/// 1280×800 capture with a single 32 px heading has ~0.3 % ink).
pub const UNIFORM_SHARE: f64 = 0.999;

/// `Some(reason)` when nearly every pixel has the same colour (a blank,
/// all-white or all-black page, or a page still showing its loader).
pub fn near_uniform(rgb: &image::RgbImage) -> Option<String> {
    let total = u64::from(rgb.width()) * u64::from(rgb.height());
    if total == 0 {
        return Some("the screenshot is empty (0 pixels)".into());
    }
    // Colours bucketed to 5 bits per channel (absorbs lossy-encoding noise).
    let mut counts = std::collections::HashMap::<u16, u64>::new();
    for p in rgb.pixels() {
        let key = (u16::from(p[0] >> 3) << 10) | (u16::from(p[1] >> 3) << 5) | u16::from(p[2] >> 3);
        *counts.entry(key).or_insert(0) += 1;
    }
    let (&key, &dominant) = counts.iter().max_by_key(|(k, c)| (**c, **k))?;
    let share = dominant as f64 / total as f64;
    if share >= UNIFORM_SHARE {
        let (r, g, b) = ((key >> 10) << 3, ((key >> 5) & 31) << 3, (key & 31) << 3);
        Some(format!(
            "the screenshot is nearly uniform ({:.2} % of pixels are #{r:02x}{g:02x}{b:02x}): the page looks blank",
            share * 100.0
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok_dom() -> DomProbe {
        DomProbe {
            router_meta: None,
            text_chars: 120,
            media: 0,
        }
    }

    #[test]
    fn status_and_router_marker_refused() {
        let r = |status, marker: Option<&str>| PageResponse {
            status,
            router_marker: marker.map(String::from),
        };
        assert_eq!(refusal(Some(&r(200, None)), &ok_dom()), None);
        assert!(refusal(Some(&r(500, None)), &ok_dom())
            .unwrap()
            .contains("HTTP 500"));
        let why = refusal(Some(&r(502, Some("error"))), &ok_dom()).unwrap();
        assert!(why.contains("router answered"), "{why}");
        let meta = DomProbe {
            router_meta: Some("error".into()),
            ..ok_dom()
        };
        assert!(refusal(Some(&r(200, None)), &meta)
            .unwrap()
            .contains("router"));
        let empty = DomProbe::default();
        assert!(refusal(Some(&r(200, None)), &empty)
            .unwrap()
            .contains("empty"));
        assert!(refusal(None, &ok_dom()).is_some());
    }

    #[test]
    fn blank_refused_text_accepted() {
        let mut img = image::RgbImage::from_pixel(1280, 800, image::Rgb([255, 255, 255]));
        assert!(near_uniform(&img).unwrap().contains("#f8f8f8"));
        // One heading-sized block of "ink": 300×40 px ≈ 1.2 % of the image.
        for x in 100..400 {
            for y in 100..140 {
                img.put_pixel(x, y, image::Rgb([20, 20, 20]));
            }
        }
        assert_eq!(near_uniform(&img), None);
    }
}
