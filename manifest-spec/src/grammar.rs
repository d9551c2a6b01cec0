//! The pest parser generated from `byteport.pest`.

use pest::iterators::Pair;
use pest::Parser;
use pest_derive::Parser;

use crate::diagnostics::Diagnostic;
use crate::source::Source;

/// Parser for `byteport.pest`.
#[derive(Parser)]
#[grammar = "byteport.pest"]
pub(crate) struct ByteportParser;

/// Parses checked source text into its `manifest` pair. The grammar's
/// catch-all lines make this fail only for input it cannot even split into
/// lines and blocks; the error is still a positioned diagnostic.
pub(crate) fn parse<'i>(src: &Source<'i>) -> Result<Pair<'i, Rule>, Diagnostic> {
    match ByteportParser::parse(Rule::manifest, src.text()) {
        Ok(mut pairs) => pairs
            .next()
            .ok_or_else(|| src.diag(0, 0, "syntax error: empty parse".into(), None)),
        Err(e) => {
            let (start, end) = match e.location {
                pest::error::InputLocation::Pos(p) => (p, p + 1),
                pest::error::InputLocation::Span((a, b)) => (a, b),
            };
            Err(src.diag(
                start,
                end,
                format!("syntax error: {}", e.variant.message()),
                Some(
                    "see SPEC.md for the layout: one directive per line, `}` alone on its line"
                        .into(),
                ),
            ))
        }
    }
}
