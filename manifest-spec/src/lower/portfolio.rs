//! The `portfolio` block.

use pest::iterators::Pair;

use super::{Lowerer, Val};
use crate::grammar::Rule;
use crate::keywords::Context;
use crate::limits::{MAX_DESCRIPTION_CHARS, MAX_TAGS, MAX_TITLE_CHARS};
use crate::model::{Description, Portfolio, Publish, Screenshot};
use crate::values::{self, Problem};

use super::blocks::{within, DEFAULT_SCREENSHOT_WAIT_MS};

impl Lowerer<'_> {
    pub(super) fn portfolio(&mut self, pair: Pair<'_, Rule>) {
        let mut pf = Portfolio {
            title: String::new(),
            tags: Vec::new(),
            screenshot: None,
            description: Description::Auto,
            publish: Publish::Review,
        };
        for p in self.entries(Context::Portfolio, "portfolio", pair) {
            let (s, e) = Self::kw_span(&p);
            let rule = p.as_rule();
            let key = p.as_str()[..e - s].to_string();
            if !self.once(
                &format!("portfolio {key}"),
                &format!("`{key}` in the `portfolio` block"),
                s,
                e,
            ) {
                continue;
            }
            match rule {
                Rule::title => {
                    let Some(v) = self.first_val(p) else { continue };
                    let t = v.text.trim().to_string();
                    if t.is_empty() || t.chars().count() > MAX_TITLE_CHARS {
                        let msg = format!("title must be 1-{MAX_TITLE_CHARS} characters");
                        self.err(v.start, v.end, msg, None);
                    } else {
                        pf.title = t;
                    }
                }
                Rule::tags => {
                    for t in p.into_inner().filter(|t| t.as_rule() == Rule::value) {
                        let Some(v) = self.val(t) else { continue };
                        let Some(tag) = self.check(&v, values::tag(&v.text)) else {
                            continue;
                        };
                        if pf.tags.contains(&tag) {
                            self.err(v.start, v.end, format!("tag `{tag}` is listed twice"), None);
                        } else if pf.tags.len() == MAX_TAGS {
                            self.err(v.start, v.end, format!("more than {MAX_TAGS} tags"), None);
                        } else {
                            pf.tags.push(tag);
                        }
                    }
                }
                Rule::screenshot => {
                    self.draft.screenshot_at = Some(s);
                    let mut shot = Screenshot {
                        path: "/".into(),
                        wait_ms: DEFAULT_SCREENSHOT_WAIT_MS,
                    };
                    for q in p.into_inner() {
                        match q.as_rule() {
                            Rule::value => {
                                let Some(v) = self.val(q) else { continue };
                                if let Some(path) =
                                    self.check(&v, values::http_path("screenshot path", &v.text))
                                {
                                    shot.path = path;
                                }
                            }
                            Rule::wait => {
                                let Some(v) = self.first_val(q) else { continue };
                                let r = values::duration(&v.text)
                                    .and_then(|ms| within("screenshot wait", ms, 0, 60_000));
                                if let Some(ms) = self.check(&v, r) {
                                    shot.wait_ms = ms;
                                }
                            }
                            _ => {}
                        }
                    }
                    pf.screenshot = Some(shot);
                }
                Rule::description => {
                    let Some(v) = self.first_val(p) else { continue };
                    if let Some(d) = self.check(&v, description(&v)) {
                        pf.description = d;
                    }
                }
                _ => {
                    let Some(v) = self.first_val(p) else { continue };
                    if let Some(p) = self.check(&v, publish(&v)) {
                        pf.publish = p;
                    }
                }
            }
        }
        self.draft.portfolio = Some(pf);
    }
}

fn description(v: &Val) -> Result<Description, Problem> {
    if !v.quoted {
        return match v.text.as_str() {
            "auto" => Ok(Description::Auto),
            "off" => Ok(Description::Off),
            _ => Err(Problem::new(format!("`{}` is not a description", v.text)).hint(
                "write `description auto`, `description off` or a quoted text: `description \"...\"`",
            )),
        };
    }
    let t = v.text.trim();
    if t.is_empty() || t.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(Problem::new(format!(
            "description must be 1-{MAX_DESCRIPTION_CHARS} characters"
        )));
    }
    Ok(Description::Text(t.to_string()))
}

fn publish(v: &Val) -> Result<Publish, Problem> {
    match (v.quoted, v.text.as_str()) {
        (false, "review") => Ok(Publish::Review),
        (false, "auto") => Ok(Publish::Auto),
        (false, "off") => Ok(Publish::Off),
        _ => {
            let best = ["review", "auto", "off"]
                .into_iter()
                .min_by_key(|k| strsim::damerau_levenshtein(&v.text.to_ascii_lowercase(), k))
                .unwrap_or("review");
            let close = strsim::damerau_levenshtein(&v.text.to_ascii_lowercase(), best) <= 2;
            Err(
                Problem::new(format!("`{}` is not a publish policy", v.text)).hint(if close {
                    format!("did you mean `{best}`?")
                } else {
                    "use `review` (approve drafts first), `auto` or `off`".into()
                }),
            )
        }
    }
}
